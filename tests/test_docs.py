"""The documentation: the README's quickstart, the links between pages, no pointers to absent documents.

The README is the front door and the rest lives in docs/*.md, so a moved or renamed section must
not leave a dead link behind. Links are checked the way GitHub renders them: a relative path must
exist and a ``#fragment`` must match a heading's anchor in the target page.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "benchmarks").glob("*.md"))]

# Pages written on other branches at the same time as these docs. Until they are merged, a link
# to one of them may point at a missing file; once the file exists its links and anchors are
# checked like any other. Delete this set after the merge.

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _prose(text: str) -> str:
    """The page without its fenced code blocks (links and headings there are not rendered)."""
    return FENCE.sub("", text)


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _code_blocks(text: str) -> list[list[str]]:
    return [[line.strip() for line in block.splitlines()[1:-1]] for block in FENCE.findall(text)]


def test_readme_quickstart_has_the_two_commands():
    text = README.read_text(encoding="utf-8")
    start = text.index("## Quickstart")
    quickstart = text[start:text.index("\n## ", start + 1)]
    assert ["snakemake --cores 8", "python -m pytest"] in _code_blocks(quickstart)


def test_ci_runs_the_readme_test_command():
    """.ci/run ends with the README's test command, so CI tests what a newcomer runs."""
    commands = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert shlex.split(commands[-1]) == ["python", "-m", "pytest"]


def test_readme_is_a_short_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"
    assert "![Rule graph](docs/rulegraph.png)" in lines


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / target.split("#")[0]).resolve()
              for target in LINK.findall(_prose(README.read_text(encoding="utf-8")))}
    unlinked = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(_prose(text)):
        if re.match(r"[a-z]+:", target):      # http(s), mailto: not checked offline
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        rel = dest.relative_to(REPO).as_posix() if dest.is_relative_to(REPO) else str(dest)
        if not dest.exists():
            broken.append(f"{target}: no such file")
            continue
        if fragment and dest.suffix == ".md" and fragment not in _anchors(dest.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with anchor #{fragment}")
    assert not broken, broken


def test_no_pointers_to_documents_the_repository_does_not_hold():
    # The character classes keep a plain grep for these words from finding this file.
    absent = re.compile("|".join([r"design[ _-]?notes?", r"design[ _-]guide", r"DESIGN\.md",
                                  r"contr[a]cts?\.md", r"\(contr[a]ct\)", r"\bissue\s+#?\d+"]), re.I)
    roots = ["rd", "tests", "workflow", "benchmarks", "docs", ".ci"]
    files = [REPO / "README.md", REPO / "Snakefile", REPO / "config.yaml"]
    files += [f for root in roots for f in (REPO / root).rglob("*")
              if f.is_file() and f.suffix in {".py", ".md", ".smk", ".yaml", ".sh", ".j2", ".rst", ""}]
    hits = [f"{f.relative_to(REPO)}:{n}: {line.strip()}"
            for f in files if f.resolve() != Path(__file__).resolve()
            for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if absent.search(line)]
    assert not hits, hits


def test_docs_quote_the_checkpoint_interval_of_the_code():
    """The pages that describe resume state --checkpoint-every's default as rd.params has it."""
    from rd import params

    default = f"{params.CHECKPOINT_EVERY_S:g}"
    for page, quote in (("troubleshooting.md", f"(default {default} s)"), ("disk-use.md", f"(default\n  {default} s;"),
                        ("slurm.md", f"default {default})")):
        assert quote in (REPO / "docs" / page).read_text(), (page, quote)


def test_library_tree_names_every_module():
    """docs/library.md's package tree lists exactly the modules of rd/ (no stale or missing name)."""
    text = (REPO / "docs/library.md").read_text(encoding="utf-8")
    tree = re.search(r"^## Package layout\n.*?^```\n(rd/\n.*?)^```", text, re.S | re.M).group(1)
    listed, stack = set(), []
    for line in tree.splitlines()[1:]:
        m = re.match(r"^([│ ]*)[├└]── (\S+)", line)
        assert m, f"not a tree line: {line!r}"
        depth, name = len(m.group(1)) // 4, m.group(2)
        stack[depth:] = [name.rstrip("/")]
        if name.endswith(".py"):
            listed.add("/".join(stack))
    on_disk = {p.relative_to(REPO / "rd").as_posix() for p in (REPO / "rd").rglob("*.py")}
    # __init__.py of rd/ and the subpackages other than data/ and __main__.py are named in prose
    on_disk -= {"__init__.py", "__main__.py", "method/__init__.py", "use/__init__.py", "report/__init__.py"}
    assert listed == on_disk, (sorted(on_disk - listed), sorted(listed - on_disk))
