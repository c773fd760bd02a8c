"""rd.report: the self-contained HTML report (content, escaping, robustness, size at MVTec scale)."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest

from rd.aggregate import write_summary
from rd.errors import RDError
from rd.report import MAIN_FIGURES, build_report
from rd.report.inputs import git_commit as _git_commit
from helpers.report_fixtures import (ARMS, COMPARISONS, make_fake_report, make_fake_results,
                                     make_mvtec_scale_results, mvtec_categories)
from rd.stats import write_stats

SECTIONS = ["run", "fairness", "results", "statistics", "cost", "curves", "defects", "failures", "reproduce"]


def make_report(root: Path, *, categories=("brick", "grass"), arms=ARMS, seeds=(0, 1, 2), comparisons=COMPARISONS,
                **kw) -> dict:
    return make_fake_report(root, categories=categories, arms=arms, seeds=seeds, comparisons=comparisons, **kw)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return make_report(tmp_path_factory.mktemp("report"), epochs=4, failure_k=2, failure_size=48)


def _images(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)


def test_nine_sections_and_self_contained(report):
    html = report["html"]
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html, sid
    assert "<details" in html and "<summary>" in html
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html), "no network references"
    assert "@import" not in html and "url(http" not in html
    imgs = _images(html)
    assert len(imgs) >= 4 + 4 * 2 * 2  # main figures + failure cases
    from PIL import Image

    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and im.width > 0 and im.height > 0


def test_header_facts(report):
    html = report["html"]
    for fact in ("git commit", "device(s) of the runs", "total compute", "Package versions", "sha256"):
        assert fact in html
    assert re.search(r"<code>([0-9a-f]{40}|unknown)</code>", html)
    assert "scipy" in html and "matplotlib" in html


def test_main_figures_written(report):
    for name in MAIN_FIGURES:
        data = (report["figures_dir"] / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_verdict_sentences(report):
    html = report["html"]
    # n = 2 categories: descriptive, no p-based verdict, with what a larger run would need
    pattern = (r"convnext_pico/tuned vs resnet18/baseline: [+\u2212]\d+\.\d+ pt image AUROC, "
               r"range \[[+\u2212]\d+\.\d+, [+\u2212]\d+\.\d+\], n = 2 categories \u2014 too few units for a "
               r"test \(n = 2 categories; 5 needed\) \(with 2 categories and this spread, differences above "
               r"\d+\.\d+ pt are detectable")
    assert re.search(pattern, html), "verdict sentence of a too-small run"
    assert "p_holm = " not in html.split('<section id="run">')[0]  # no p at a glance
    for comp in ("convnext_pico/baseline vs resnet18/baseline", "convnext_pico/tuned vs convnext_pico/baseline"):
        assert f"{comp}: " in html
    # 4 epochs of the recipe's 200: every comparison loses its headline at a glance
    glance = html.split('<section id="run">')[0]
    assert glance.count("no headline") == 3 and "NOT CONVERGED" in glance and "4 of 200 epochs" in glance


def test_fairness_flags_loud(report):
    html = report["html"]
    assert "RANDOM-INIT TEACHER" in html
    assert "Do not read such a comparison as evidence about pretrained" in html
    # all configured comparisons are between random-init arms; pretraining is equal there
    assert "TEACHER PRETRAINING DIFFERS" not in html
    assert "test split (hash of the test image list" in html and "file_list_sha256" in html


def test_pretraining_differs_flag(tmp_path):
    rep = make_report(tmp_path, categories=("brick",), arms=("resnet18/baseline", "efficientnet_lite0/baseline"),
                      comparisons=[("resnet18/baseline", "efficientnet_lite0/baseline")], seeds=(0, 1),
                      epochs=2, failure_k=1, failure_size=16, figures=False)
    html = rep["html"]
    assert "TEACHER PRETRAINING DIFFERS" in html and "cannot be attributed to the" in html
    # one category, two seeds: the across-categories test is impossible and says so
    assert "too few units for a test (n = 1 category; 5 needed)" in html


def test_autoescape_user_names(tmp_path):
    rep = make_report(tmp_path, categories=("<b>x</b>", "grass"), arms=ARMS[:2], comparisons=COMPARISONS[:1],
                      seeds=(0, 1), epochs=2, failure_k=1, failure_size=16, benchmarks=False,
                      defect_types=("<i>y</i>", "stain"), figures=False)
    html = rep["html"]
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "&lt;i&gt;y&lt;/i&gt;" in html and "<i>y</i>" not in html


def test_missing_per_run_files_are_reported_not_fatal(tmp_path):
    fake = make_fake_results(tmp_path, categories=("brick",), arms=ARMS[:2], seeds=(0, 1), epochs=2,
                             failure_k=1, failure_size=16, benchmarks=False, eval_every=0)
    for run in fake["runs"][:2]:
        for name in ("curves.json", "history.csv", "failure_cases.npz", "scores.csv"):
            (Path(run) / name).unlink()
    Path(fake["runs"][2], "failure_cases.npz").write_bytes(b"not a zip")
    summary, stats = tmp_path / "s.csv", tmp_path / "st.csv"
    write_summary(fake["runs"], complexity=fake["complexity"], out=summary)
    write_stats(summary, [tuple(ARMS[:2])], out=stats)
    out = tmp_path / "r.html"
    build_report(summary=summary, stats=stats, config=fake["config"], manifests=[], out=out)
    html = out.read_text()
    assert "missing or unreadable per-run file" in html and "curves.json missing" in html
    assert "unreadable (" in html  # the corrupt npz
    assert "not recorded during training" in html  # eval_every = 0
    assert "no data manifest given" in html


def test_yaml_config_and_cli(tmp_path):
    from rd.cli import main

    rep = make_report(tmp_path, categories=("brick",), arms=ARMS[:2], comparisons=COMPARISONS[:1], seeds=(0, 1),
                      epochs=2, failure_k=1, failure_size=16, figures=False, config_format="yaml")
    assert "snakemake --cores 8 --configfile" in rep["html"] and "image_size: 64" in rep["html"]
    out, figs = tmp_path / "cli.html", tmp_path / "figs"
    rc = main(["report", "--summary", str(rep["summary"]), "--stats", str(rep["stats"]), "--config",
               str(rep["config"]), "--data-manifests", *rep["manifests"], "--out", str(out), "--figures-dir", str(figs)])
    assert rc == 0 and out.stat().st_size > 10_000
    assert sorted(p.name for p in figs.iterdir()) == sorted(f"{n}.png" for n in MAIN_FIGURES)
    assert main(["report", "--summary", str(tmp_path / "none.csv"), "--stats", str(rep["stats"]),
                 "--config", str(rep["config"]), "--out", str(tmp_path / "x.html")]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(RDError, match="cannot be parsed"):
        build_report(summary=rep["summary"], stats=rep["stats"], config=bad, out=tmp_path / "y.html")
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "y.html").exists()


def test_git_missing_gives_unknown(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable anywhere
    assert _git_commit() == {"commit": "unknown", "dirty": False}
    monkeypatch.chdir(tmp_path)


@pytest.mark.slow
def test_mvtec_scale_report_size_and_content(tmp_path):
    """15 categories x 4 arms x 5 seeds (300 runs): the report stays a few MB and names every
    category (its time is measured by benchmarks/bench_report.py, not here)."""
    cats = mvtec_categories()
    assert len(cats) == 15
    fake = make_mvtec_scale_results(tmp_path)
    summary, stats = tmp_path / "summary.csv", tmp_path / "stats.csv"
    write_summary(fake["runs"], complexity=fake["complexity"], benchmarks=fake["benchmarks"], out=summary)
    write_stats(summary, COMPARISONS, out=stats)
    out = tmp_path / "report.html"
    build_report(summary=summary, stats=stats, config=fake["config"], manifests=fake["manifests"], out=out,
                 figures_dir=tmp_path / "figs")
    size_mb = out.stat().st_size / 2 ** 20
    assert size_mb < 6, f"report is {size_mb:.1f} MiB"
    html = out.read_text()
    assert html.count("per_category:") >= 15 * 3
    assert all(c in html for c in cats)


def test_no_comparisons_header_only_stats(tmp_path):
    fake = make_fake_results(tmp_path, categories=("brick",), arms=ARMS[:1], seeds=(0, 1), epochs=2, failure_k=1,
                             failure_size=16, benchmarks=False, comparisons=[])
    summary, stats = tmp_path / "s.csv", tmp_path / "st.csv"
    write_summary(fake["runs"], out=summary)
    write_stats(summary, [], out=stats)
    out = tmp_path / "r.html"
    build_report(summary=summary, stats=stats, config=fake["config"], manifests=fake["manifests"], out=out)
    html = out.read_text()
    assert "no comparisons were configured" in html and "real failures" in html


def test_one_metric_list():
    """summary.csv columns, the metrics compared and the report's tables share rd.metric_list.METRICS."""
    from rd.aggregate import METRIC_COLUMNS
    from rd.metric_list import METRICS
    from rd.report.formatting import HEADLINE_METRICS, METRIC_LABEL
    from rd.stats import DEFAULT_METRICS

    names = [m.name for m in METRICS]
    assert METRIC_COLUMNS == names and list(DEFAULT_METRICS) == names and list(METRIC_LABEL) == names
    assert names.index("pro_rd4ad") == names.index("aupro") + 1
    assert METRIC_LABEL["pro_rd4ad"] == "PRO (RD4AD code)" and "MVTec" in METRIC_LABEL["aupro"]
    assert HEADLINE_METRICS == ("image_auroc", "pixel_auroc", "aupro")
    assert all(m.higher_is_better for m in METRICS)  # the report's ★ marks the highest mean


def test_mvtec_report_audit_rows_and_reproduction_check(tmp_path):
    arms = ("wide_resnet50_2/baseline", "convnext_tiny/baseline")
    rep = make_report(tmp_path, dataset="mvtec", categories=("bottle",), arms=arms, comparisons=[arms], seeds=(0, 1),
                      epochs=2, failure_k=1, failure_size=16, figures=False, benchmarks=False,
                      weights={"wide_resnet50_2": "imagenet", "convnext_tiny": "imagenet"}, defect_types=("anomaly",),
                      manifest_extra={"dataset_version": "MVTec AD 1.0", "split_rule": "official train/test"})
    html = rep["html"]
    assert "Reproduction check" in html and "93.9" in html and "98.5" in html and "Deng &amp; Li" in html
    assert "not with the MVTec AUPRO (MVTec, FPR≤0.3)" in html
    assert "PRO (RD4AD code)" in html  # a results column: the fixture's metrics.json has pro_rd4ad
    assert "version: MVTec AD 1.0, split: official train/test" in html
    assert "nearest-neighbour" in html and "σ = 4 at 256 px" in html and "Verdicts only for the primary metric" in html
    assert "student parameters" in html and "83.8 M" in html and "26.1 M" in html
    assert "STUDENT DIFFERS" in html and "the difference mixes teacher and student" in html
    # in1k and in1k, but torchvision's 90-epoch recipe against ConvNeXt's 300-epoch one
    assert re.search(r"teacher pretraining</td><td[^>]*><span class=\"st equal", html) is None
    assert "TEACHER PRETRAINING DIFFERS" in html and "recipes torchvision original (90 epochs)" in html
    assert "one defect type" in html and html.count("<tr><td>anomaly</td>") == 1


def test_old_runs_without_new_keys_still_report(tmp_path):
    rep = make_report(tmp_path, categories=("brick",), arms=ARMS[:2], comparisons=COMPARISONS[:1], seeds=(0, 1),
                      epochs=2, failure_k=1, failure_size=16, figures=False, benchmarks=False,
                      legacy_train_json=True, pro_rd4ad=False)
    html = rep["html"]
    assert "Reproduction check" not in html  # not MVTec
    assert "<th>PRO (RD4AD code)</th>" not in html  # no run has it: no column, no crash
    # old train.json: the student's facts are unknown, so the matrix shows them and nothing is claimed
    assert re.search(r"<td>student family</td><td[^>]*><span class=\"st unknown\">unknown", html)
    assert "only the teacher differs" not in html
    # a summary.csv written before the pro_rd4ad column existed
    import pandas as pd

    old_summary = tmp_path / "old_summary.csv"
    pd.read_csv(rep["summary"]).drop(columns=["pro_rd4ad"]).to_csv(old_summary, index=False)
    old_stats = tmp_path / "old_stats.csv"
    write_stats(old_summary, COMPARISONS[:1], out=old_stats)
    out = build_report(summary=old_summary, stats=old_stats, config=rep["config"], out=tmp_path / "old.html")
    assert "<th>PRO (RD4AD code)</th>" not in out.read_text()


def test_report_says_each_caveat_once_and_is_under_half_the_words(tmp_path):
    """The default-like run: each caveat's meaning once, one audit matrix, and under half of the
    visible words per arm of the report before the say-once change (9,841 words for 5 arms, measured with
    ``visible_words`` on this fixture at commit 970857b)."""
    from helpers.report_fixtures import DEFAULT_LIKE, visible_words
    from rd.report.audit import RANDOM_INIT_MEANING

    rep = make_fake_report(tmp_path, failure_k=4, failure_size=16, figures=False, **DEFAULT_LIKE)
    html = rep["html"]
    assert html.count(RANDOM_INIT_MEANING) == 1
    assert html.count("A ReLU-output student cannot reproduce") == 1
    assert html.count('<section id="fairness">') == 1 and "Equal in every comparison:" in html
    fairness = html.split('<section id="fairness">')[1].split("</section>")[0]
    assert fairness.count("<table>") == 1
    words_per_arm = visible_words(html) / len(DEFAULT_LIKE["arms"])
    assert words_per_arm < 9_841 / 5 / 2, words_per_arm
    # the per-category readings carry the comparison's caveats, and the test-set reading is there
    stats = html.split('<section id="statistics">')[1].split("</section>")[0]
    assert "test-set uncertainty" in stats and "NOT CONVERGED" in stats


def test_paper_tables_are_written_and_linked(tmp_path):
    arms = ("wide_resnet50_2/baseline", "convnext_tiny/baseline")
    rep = make_report(tmp_path, dataset="mvtec", categories=("bottle", "cable"), arms=arms, comparisons=[arms],
                      seeds=(0, 1), epochs=2, failure_k=1, failure_size=16, figures=False, benchmarks=False,
                      weights={"wide_resnet50_2": "imagenet", "convnext_tiny": "imagenet"},
                      arm_effects={"convnext_tiny/baseline": 0.05})
    tables = rep["out"].parent / "tables"
    results = (tables / "results.md").read_text()
    assert results.startswith("| arm | image AUROC (primary) |") and "| convnext_tiny/baseline | **" in results
    tex = (tables / "results.tex").read_text()
    assert r"\toprule" in tex and r"\textbf{" in tex and r"$\pm$" in tex and r"wide\_resnet50\_2" in tex
    stats_md = (tables / "stats.md").read_text()
    assert "| convnext_tiny/baseline vs wide_resnet50_2/baseline |" in stats_md and "too few units" in stats_md
    assert (tables / "stats.tex").read_text().count(r"\midrule") == 1
    per_category = (tables / "per_category.md").read_text()
    assert "| bottle |" in per_category and "not found in the reference material" in per_category
    for name in ("results.md", "results.tex", "stats.md", "stats.tex", "per_category.md"):
        assert f'href="tables/{name}"' in rep["html"]


def test_validation_fraction_is_a_listed_deviation():
    from rd.report.what_ran import protocol_notes

    assert any("90% of train/good" in n for n in protocol_notes({"dataset": {"validation_fraction": 0.1}}))
    assert not any("train/good" in n for n in protocol_notes({"dataset": {"validation_fraction": 0}}))
    assert not any("train/good" in n for n in protocol_notes({"dataset": {"name": "textures"}}))
