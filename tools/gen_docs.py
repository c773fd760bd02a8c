"""Write the generated blocks of the docs from the code, so a default or a command cannot drift.

A block sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->`` in a page; the
prose around it is hand-written and left alone. The facts come from their one source:

* ``config-keys``, ``config-differs``, ``default-arms`` (docs/configuration.md): the config
  schema (``workflow/schemas/config.schema.yaml``: types, defaults, ranges, meanings and its
  ``x-reruns`` map), the parameter rules of ``rd.params`` (the allowed values the workflow and
  the CLI both enforce) and ``config.yaml``;
* ``cli-commands`` (docs/library.md): the argparse parser of ``rd.cli``.

Usage: ``python tools/gen_docs.py`` rewrites the blocks; ``--check`` writes nothing and exits 1
naming every stale page (tests/test_docs_generated.py runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:      # run as a script from anywhere: the repository's rd wins
    sys.path.insert(0, str(REPO))

from rd import cli, params  # noqa: E402

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
CONFIG = REPO / "config.yaml"
BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)

#: config key -> its rule in rd.params (the rule's wording is what both the CLI and the config check say)
RULE_OF = {"image_size": "image_size", "epochs": "epochs", "batch_size": "batch_size", "seeds": "seed",
           "threads_per_job": "threads", "eval_every": "eval_every", "failure_cases": "failure_cases",
           "device": "device", "dataset.seed": "seed", "dataset.validation_fraction": "validation_fraction",
           "dataset.generate.n_train": "n_train", "dataset.generate.n_test_good": "n_test_good",
           "dataset.generate.n_per_defect": "n_per_defect", "dataset.generate.size": "crop_size",
           "smoke.image_sizes": "image_size", "complexity.batch_size": "throughput_batch_size",
           "complexity.device": "complexity_device", "predict.seed": "seed",
           "settings.<name>.lr_select_epochs": "lr_select_epochs"}


def _code(value: Any) -> str:
    """A value as a Markdown code span in YAML flow style (what a user writes in config.yaml)."""
    if isinstance(value, str):
        text = value
    else:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
    return f"`{text}`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(node: dict) -> str:
    if "$ref" in node and "type" not in node:
        return node["$ref"].rsplit("/", 1)[-1]
    kinds = node.get("type", "")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = {"object": "mapping", "array": "list", "number": "number"}
    out = []
    for kind in kinds:
        word = words.get(kind, kind)
        if kind == "array" and "items" in node:
            word = f"list of {_type(node['items'])}"
        out.append(word)
    return " or ".join(w for w in out if w)


def _schema_allowed(node: dict) -> str:
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(_code(v) for v in node["enum"]))
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in node:
            parts.append(f"{word} {node[key]}")
    if "multipleOf" in node:
        parts.append(f"a multiple of {node['multipleOf']}")
    if "minItems" in node and node.get("maxItems") == node["minItems"]:
        parts.append(f"exactly {node['minItems']} items")
    elif "minItems" in node:
        parts.append(f"at least {node['minItems']} item(s)")
    if "maxItems" in node and node.get("maxItems") != node.get("minItems"):
        parts.append(f"at most {node['maxItems']} item(s)")
    if node.get("uniqueItems"):
        parts.append("no repeats")
    if "minProperties" in node:
        parts.append(f"at least {node['minProperties']} entry")
    items = node.get("items")
    if isinstance(items, dict) and "$ref" not in items and _schema_allowed(items):
        parts.append("each " + _schema_allowed(items))
    return "; ".join(parts)


def _allowed(key: str, node: dict) -> str:
    if key in RULE_OF:
        described = params.RULES[RULE_OF[key]].describe()
        return ("each " if node.get("type") == "array" else "") + described
    if key.startswith("settings.<name>.") and key.split(".")[-1] in params.SETTING_RULES:
        described = params.SETTING_RULES[key.split(".")[-1]].describe()
        return f"two numbers, each {described}" if key.endswith(".betas") else described
    return _schema_allowed(node)


def _rows(schema: dict, node: dict, prefix: str = "") -> Iterator[tuple[str, dict]]:
    """(key path, schema node) of every key a user can set, parents before children."""
    for name, sub in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        kinds = sub.get("type") if isinstance(sub.get("type"), list) else [sub.get("type")]
        if "properties" not in sub or "null" in kinds:   # a plain group (dataset, smoke, ...) has no row
            yield key, sub
        if "properties" in sub:
            yield from _rows(schema, sub, f"{key}.")
        extra = sub.get("additionalProperties")
        if isinstance(extra, dict) and "properties" in extra:
            yield from _rows(schema, extra, f"{key}.<name>.")


def _reruns(schema: dict, key: str) -> str:
    reruns = schema["x-reruns"]
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in reruns:
            return reruns[".".join(parts[:n])]
    raise SystemExit(f"{SCHEMA.relative_to(REPO)}: x-reruns has no entry for {key!r} or a parent of it. "
                     "Fix: add one (what a change of the key reruns).")


def _default(key: str, node: dict, required: set[str]) -> str:
    if "default" in node:
        return _code(node["default"])
    if key.startswith("settings.<name>."):
        name = key.split(".")[-1]
        if name in required:
            return "required"
        if name in params.SETTING_DEFAULTS:
            return f"{_code(params.SETTING_DEFAULTS[name])} (filled in by `train`)"
        return "unset"
    if key == "backbones.<name>.model":
        return "the backbone's name"
    return "unset" if not key.startswith("predict.") else "see meaning"


def config_keys() -> str:
    """The key table: key, type, default, allowed values, what a change reruns, meaning."""
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    resource = schema["$defs"]["resource"]
    required = set(schema["properties"]["settings"]["additionalProperties"].get("required", []))
    lines = ["| key | type | default | allowed | a change reruns | meaning |", "| --- | --- | --- | --- | --- | --- |"]
    for key, node in _rows(schema, schema):
        meaning = node.get("description", "")
        kind = _type(node)
        allowed = _allowed(key, node)
        if node.get("$ref", "").endswith("/resource"):
            kind = "mapping"
            allowed = "; ".join(f"`{k}`: {_type(v)} {_schema_allowed(v)}"
                                for k, v in resource["properties"].items())
            meaning = "; ".join(f"`{k}`: {v['description']}" for k, v in resource["properties"].items())
        lines.append("| " + " | ".join(_cell(c) for c in (
            f"`{key}`", kind, _default(key, node, required), allowed, _reruns(schema, key), meaning)) + " |")
    return "\n".join(lines) + "\n"


def _differences(config: dict, node: dict, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(key, config value, schema default) where config.yaml departs from the default, per leaf key."""
    for key, value in config.items():
        sub = node.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in sub:
            yield from _differences(value, sub, f"{prefix}{key}.")
        elif value != sub.get("default", "(no default)"):
            yield f"{prefix}{key}", value, sub.get("default", "(no default)")


def config_differs() -> str:
    """The keys where config.yaml sets another value than the schema's default."""
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    lines = []
    for key, value, default in _differences(config, schema):
        if key in ("backbones", "settings"):
            lines.append(f"- `{key}`: `config.yaml` defines {', '.join(f'`{k}`' for k in value)}; "
                         f"the default defines {', '.join(f'`{k}`' for k in default)};")
        else:
            lines.append(f"- `{key}`: {_code(value)} in `config.yaml`, {_code(default)} by default;")
    if not lines:
        return "`config.yaml` sets every key to its schema default.\n"
    lines[-1] = lines[-1].removesuffix(";") + "."
    return f"`config.yaml` differs from these defaults in {len(lines)} key(s):\n\n" + "\n".join(lines) + "\n"


def default_arms() -> str:
    """How many arms, categories and seeds config.yaml runs."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    arms, cats, seeds = config["arms"], config["dataset"]["categories"], config["seeds"]
    lines = [f"`config.yaml` runs {len(arms)} arms, each on {len(cats)} categories "
             f"({', '.join(f'`{c}`' for c in cats)}) × {len(seeds)} seeds = {len(arms) * len(cats) * len(seeds)} "
             f"runs, and makes {len(config['comparisons'])} comparisons:", ""]
    lines += [f"- `{arm}`" for arm in arms]
    lines += ["", "Comparisons (differences are b − a):", ""]
    lines += [f"- `{a}` vs `{b}`" for a, b in config["comparisons"]]
    return "\n".join(lines) + "\n"


def cli_commands() -> str:
    """Every ``python -m rd`` command with its one-line help, from the real parser."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = [f"`{parser.prog} --help` lists {len(sub._choices_actions)} commands "
             f"(`{parser.prog} <command> --help` documents each one's flags):", "",
             "| command | what it does |", "| --- | --- |"]
    lines += [f"| `{parser.prog} {a.dest}` | {_cell(a.help)} |" for a in sub._choices_actions]
    return "\n".join(lines) + "\n"


#: block name -> (page, generator)
BLOCKS: dict[str, tuple[str, Callable[[], str]]] = {
    "config-keys": ("docs/configuration.md", config_keys),
    "config-differs": ("docs/configuration.md", config_differs),
    "default-arms": ("docs/configuration.md", default_arms),
    "cli-commands": ("docs/library.md", cli_commands),
}


def render(page: str, text: str) -> str:
    """``text`` (the page ``page``) with each of its generated blocks rewritten."""
    wanted = {name for name, (where, _) in BLOCKS.items() if where == page}
    found = set()

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS or BLOCKS[name][0] != page:
            raise SystemExit(f"{page}: unknown generated block {name!r}. Fix: use one of {sorted(wanted)}.")
        found.add(name)
        return match[1] + BLOCKS[name][1]() + match[4]

    out = BLOCK.sub(fill, text)
    if wanted - found:
        raise SystemExit(f"{page}: missing generated block(s) {sorted(wanted - found)}. Fix: add "
                         "'<!-- generated: NAME -->' and '<!-- end generated -->' lines where it belongs.")
    return out


def stale_pages() -> dict[str, str]:
    """page -> its text as it should be, for every page whose generated blocks are out of date."""
    out = {}
    for page in sorted({where for where, _ in BLOCKS.values()}):
        text = (REPO / page).read_text(encoding="utf-8")
        new = render(page, text)
        if new != text:
            out[page] = new
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is stale")
    args = ap.parse_args(argv)
    stale = stale_pages()
    for page, text in stale.items():
        if args.check:
            print(f"{page}: generated blocks are stale. Fix: run python tools/gen_docs.py", file=sys.stderr)
        else:
            (REPO / page).write_text(text, encoding="utf-8")
            print(f"rewrote {page}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
