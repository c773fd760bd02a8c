"""Bad values of every kind for every CLI flag with a rule and every setting key, and the tests'
own reading of which kinds each rule accepts (tests/test_params.py walks them all in-process,
tests/test_contract.py draws one per flag)."""

from __future__ import annotations

import argparse
import math

from rd import params
from rd.cli import build_parser

KINDS = {"wrong_type": "abc", "negative": "-1", "zero": "0", "nan": "nan", "inf": "inf", "boolean": "true",
         "fraction": "1.5"}
#: A category is a path component: these would name another folder (or the root's parent).
CATEGORY_KINDS = {"parent": "..", "self": ".", "hidden": ".cache", "path": "a/b", "absolute": "/etc",
                  "space": "a b", "backslash": "a\\b"}


def _rule_of(action: argparse.Action) -> str | None:
    name = getattr(action.type, "__name__", "")
    return name if name in params.RULES and action.type.__module__ == "rd.params" else None


def _flags_with_rules() -> list[tuple[str, str, str]]:
    """(command, flag, rule) for every flag of every command whose type comes from rd.params."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for command, p in sub.choices.items():
        for action in p._actions:
            rule = _rule_of(action)
            if rule:
                out.append((command, action.option_strings[0], rule))
    return out


FLAGS = _flags_with_rules()


def valid(rule: params.Rule, text: str) -> bool:
    """The test's own reading of the table (not Rule.convert): which kinds a rule accepts."""
    if rule is params.RULES["category"]:   # a folder name: letters, digits, _ . -, no leading dot
        return not text.startswith(".") and all(c.isascii() and (c.isalnum() or c in "_.-") for c in text)
    if rule.kind is str:
        return False   # none of KINDS is a device or a choice
    if text in ("abc", "nan", "inf", "true") or (text == "1.5" and rule.kind is int):
        return False
    value = float(text)
    low = rule.minimum if rule.minimum is not None else -math.inf
    high = rule.maximum if rule.maximum is not None else math.inf
    return low <= value <= high and (rule.above is None or value > rule.above) and \
        (not rule.multiple_of or value % rule.multiple_of == 0)


SETTING_KINDS = {"wrong_type": "abc", "negative": -1, "zero": 0, "nan": math.nan, "inf": math.inf, "boolean": True,
                 "list": [1, 2]}


def setting_valid(key: str, value) -> bool:
    """The test's own reading: which of SETTING_KINDS a key accepts."""
    if key in ("optimizer", "schedule", "betas") or isinstance(value, (str, bool, list)):
        return False
    if not math.isfinite(value) or value < 0:
        return False
    return not (key == "lr" and value == 0)
