"""The generated blocks of the docs equal what tools/gen_docs.py makes from the code now, and
every error message docs/errors.md quotes is one the code can print.

So changing a schema default, a parameter rule, config.yaml or a command without regenerating
fails here, and so does rewording a message without updating the catalogue."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ERRORS = REPO / "docs/errors.md"


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", REPO / "tools/gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_blocks_are_up_to_date():
    stale = _gen_docs().stale_pages()
    assert not stale, f"stale generated docs {sorted(stale)}: run python tools/gen_docs.py"


def test_check_flag_names_the_stale_page(tmp_path, monkeypatch):
    """--check exits 1 and names the page when a block differs (here: a block's body edited)."""
    gen = _gen_docs()
    page = tmp_path / "docs/library.md"
    page.parent.mkdir()
    text = (REPO / "docs/library.md").read_text(encoding="utf-8")
    page.write_text(text.replace("| `python -m rd train` |", "| `python -m rd train-it` |"), encoding="utf-8")
    (tmp_path / "docs/configuration.md").write_text((REPO / "docs/configuration.md").read_text(encoding="utf-8"),
                                                    encoding="utf-8")
    monkeypatch.setattr(gen, "REPO", tmp_path)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and page.read_text(encoding="utf-8") == text


def test_the_script_runs_from_the_command_line():
    out = subprocess.run([sys.executable, str(REPO / "tools/gen_docs.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_tables_name_every_command_and_key():
    """The blocks carry the real counts (the hand-written docs once said 8 commands, 3 arms)."""
    gen = _gen_docs()
    from rd import cli

    commands = gen.cli_commands()
    assert f"lists {len(cli.COMMANDS)} commands" in commands
    assert all(f"`python -m rd {name}`" in commands for name in cli.COMMANDS)
    assert "| `epochs` | integer | `4` | an integer >= 1 |" in gen.config_keys()


# --------------------------------------------------------------------------- the error catalogue
#: the share of a message's words that must be found in the source (see _coverage)
THRESHOLD = 0.6
#: a quoted value opens and closes outside a word, so the apostrophe of "workflow's" is no quote
QUOTED = r"(?<!\w)'[^']*'(?!\w)"
PLACEHOLDER = re.compile(r"…|\.\.\.|<[^>]*>|" + QUOTED + r"|\"[^\"]*\"|\b\d[\w.:]*|\(…\)")


def _literals(path: Path) -> list[str]:
    """The string literals of a Python file (f-string holes as \\0, so a fragment cannot span one)."""
    pieces = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.JoinedStr):
            pieces.append("\0".join(v.value if isinstance(v, ast.Constant) else "" for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            pieces.append(node.value)
    return pieces


def _source_strings() -> str:
    """Every string literal of rd/, the workflow's rule files and the Snakefile as text, the
    library messages the code passes through (the string literals of jsonschema and argparse, the
    OS's texts) and what each rule of rd.params says a value must be (the rule texts are composed
    by Rule.describe): one fragment must lie inside one of them."""
    import argparse
    import os

    import jsonschema

    from rd import params

    pieces = [text for path in sorted((REPO / "rd").rglob("*.py")) for text in _literals(path)]
    pieces += [p.read_text(encoding="utf-8") for p in [REPO / "Snakefile", *sorted((REPO / "workflow").rglob("*.smk"))]]
    pieces += _literals(Path(argparse.__file__))
    pieces += [text for p in sorted(Path(jsonschema.__file__).parent.glob("_*.py")) for text in _literals(p)]
    pieces += [os.strerror(n) for n in range(1, 134)]
    rules = [*params.RULES.values(), *params.SETTING_RULES.values()]
    pieces += [f"must be {rule.describe()}, got \0" for rule in rules]
    return "\0".join(" ".join(p.split()) for p in pieces)


def _catalogue() -> list[str]:
    """The messages docs/errors.md quotes: each code span in the first cell of a row of a table
    whose first column is headed Message or Line (not the table of allowed values)."""
    out, in_messages = [], False
    for line in ERRORS.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            in_messages = False
            continue
        first = re.split(r"(?<!\\)\|", line)[1].strip()
        if first in ("Message", "Line"):
            in_messages = True
        elif in_messages and not first.startswith("---"):
            out += [m[1] or m[2] for m in re.finditer(r"``(.+?)``|`([^`]+)`", first)]
    return out


#: what the CLI and argparse put before a message ('error: argument --image-size: must be ...'),
#: composed by format strings no literal run covers
WRAPPER = re.compile(r"^(?:(?:error|warning): )?(?:argument [-\w/]+: )?")


def _body(message: str) -> str:
    """The message without its wrapper, spaces collapsed."""
    return " ".join(WRAPPER.sub("", message).split())


def _fragments(message: str) -> list[str]:
    """The literal runs of a quoted message: what lies between placeholders and example values,
    two words or more."""
    parts = [p.strip(" .,;:()") for p in PLACEHOLDER.split(_body(message))]
    return [" ".join(p.split()) for p in parts if len(p.split()) >= 2]


def test_the_catalogue_quotes_messages():
    messages = _catalogue()
    assert len(messages) > 60, len(messages)
    assert all(_fragments(m) for m in messages if len(m.split()) >= 4), \
        [m for m in messages if len(m.split()) >= 4 and not _fragments(m)]


def _segments(source: str) -> list[str]:
    """The literal runs of the source's strings (f-string holes split them) worth matching: two
    words and ten characters or more, so 'is not' alone covers nothing."""
    runs = {" ".join(r.strip(" .,;:()'").split()) for piece in source.split("\0")
            for r in re.split(r"[.;:()]\s|\s\(|…|" + QUOTED + r"|\{[^}]*\}", re.sub(r"^(error|warning): ", "", piece))}
    # also cut where the doc's fragments are cut, at a number ('must be a finite number > 0, got'
    # holds 'must be a finite number >'): the doc cannot tell a literal 0 from an example value
    runs |= {" ".join(r.strip(" .,;:()'").split()) for run in runs for r in re.split(r"\b\d[\w.:]*", run)}
    return sorted(r for r in runs if len(r.split()) >= 2 and len(r) >= 10)


def _coverage(fragments: list[str], segments: list[str]) -> float:
    """The share of a message's letters that lie in a literal run of the source. The code's
    holes ('Cannot read {path}: {exc}') take the doc's example values, so a message need not be
    covered whole; a reworded one loses most of its cover."""
    text = " \0 ".join(fragments)
    covered = [False] * len(text)
    for fragment in fragments:   # a run the doc cut short at an example value ('... is 0.')
        if len(fragment) >= 10 and any(fragment in segment for segment in segments):
            start = text.find(fragment)
            covered[start:start + len(fragment)] = [True] * len(fragment)
    for segment in segments:
        start = text.find(segment)
        while start >= 0:
            covered[start:start + len(segment)] = [True] * len(segment)
            start = text.find(segment, start + 1)
    letters = [i for i, ch in enumerate(text) if ch.isalnum()]
    return sum(covered[i] for i in letters) / len(letters) if letters else 1.0


#: an f-string template needs this many words of its own, so '{path}: {exc}' matches nothing
TEMPLATE_WORDS = 4


def _templates() -> list[re.Pattern]:
    """The f-strings of rd/ as patterns, each hole matching any text: a message whose literal
    runs are short ('Test set {d} has no defect folders (only good).') is found when it is one
    of them whole, the doc's placeholders ('…', '<root>', 'x') standing in for the holes."""
    out = []
    for path in sorted((REPO / "rd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.JoinedStr):
                continue
            parts = [v.value if isinstance(v, ast.Constant) else None for v in node.values]
            if sum(len(p.split()) for p in parts if p) >= TEMPLATE_WORDS:
                out.append(re.compile("".join(".+?" if p is None else re.escape(re.sub(r"\s+", " ", p))
                                              for p in parts), re.S))
    return out


def _found(message: str, segments: list[str], templates: list[re.Pattern]) -> bool:
    """A message is in the source when its literal runs are covered or it fills one f-string."""
    body = _body(message)
    return _coverage(_fragments(message), segments) >= THRESHOLD or any(t.fullmatch(body) for t in templates)


def test_every_catalogued_message_occurs_in_the_source():
    segments, templates = _segments(_source_strings()), _templates()
    low = [f"{_coverage(_fragments(m), segments):.0%}: {m}" for m in _catalogue() if not _found(m, segments, templates)]
    assert not low, "docs/errors.md quotes text no source prints (reworded?):\n" + "\n".join(low)


def test_a_reworded_message_fails_the_check():
    segments, templates = _segments(_source_strings()), _templates()
    quoted = "Training loss became nan at epoch 3 (lr 5.00e-03); no model was written."
    assert _coverage(_fragments(quoted), segments) >= THRESHOLD
    reworded = quoted.replace("Training loss became", "The loss turned").replace("no model was", "nothing")
    assert _coverage(_fragments(reworded), segments) < THRESHOLD
    assert not _found(reworded, segments, templates)


def test_a_reworded_f_string_message_fails_the_check():
    """Found only as a whole f-string (its literal runs are too short to cover it), so one word
    changed in a literal part loses it."""
    segments, templates = _segments(_source_strings()), _templates()
    quoted = "Test set <root>/<cat>/test has no defect folders (only good)."
    assert _coverage(_fragments(quoted), segments) < THRESHOLD and _found(quoted, segments, templates)
    for reworded in (quoted.replace("defect folders", "defect folder"), quoted.replace("Test set", "Test data"),
                     quoted.replace("(only good)", "(good only)")):
        assert not _found(reworded, segments, templates), reworded


@pytest.mark.parametrize("page", ["docs/troubleshooting.md"])
def test_troubleshooting_states_no_message_of_its_own(page):
    """troubleshooting.md diagnoses and links; the messages and fixes live only in errors.md."""
    text = (REPO / page).read_text(encoding="utf-8")
    assert not [line for line in text.splitlines() if line.startswith("| Message")], \
        f"{page} has a message table: move it to docs/errors.md"
    assert "(errors.md#" in text
