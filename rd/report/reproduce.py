"""The "Reproduce" section: copy-pasteable commands that rebuild this report.

Every value taken from the config or from paths is shell-quoted: a category or path with a
space or a quote must not turn into a different command.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Sequence

from rd.commands import evaluate_command, run_dir, shell, train_command
from rd.report.inputs import dataset_of_config


def one_run_commands(config: dict) -> list[dict]:
    """Per arm, the train and evaluate commands of its first category and seed, from the same
    builder the workflow's rules run (rd.commands), so a copied command reproduces the run.
    Empty when the config lacks what a command needs (an older or hand-written config)."""
    dataset = config.get("dataset")
    categories, seeds = dataset_of_config(config)["categories"], config.get("seeds") or [0]
    if not isinstance(dataset, dict) or not dataset.get("root") or not categories:
        return []
    out = []
    for arm in config.get("arms") or []:
        backbone, _, setting = str(arm).partition("/")
        try:
            folder = run_dir(config, backbone, setting, categories[0], seeds[0])
            train = train_command(config, backbone, setting, categories[0], seeds[0], folder)
            evaluate = evaluate_command(config, categories[0], f"{folder}/model.pt", folder)
        except (KeyError, TypeError, ValueError):  # an arm whose backbone or setting the config lacks
            continue
        out.append({"arm": str(arm), "category": categories[0], "seed": seeds[0],
                    "train": shell(train), "evaluate": shell(evaluate)})
    return out


def reproduce(config: dict, config_path: Path, summary_path: Path, stats_path: Path, manifests: Sequence,
              out: Path, comparisons: Sequence[tuple[str, str]], commit: str, figures_dir) -> dict:
    """``pipeline`` (whole workflow), ``steps`` (stats + report), ``one_run`` (train + evaluate
    per arm, first category and seed) and the resolved config as YAML."""
    import yaml

    def q(x) -> str:
        return shlex.quote(str(x))

    dataset = dataset_of_config(config)
    pipeline = [f"git checkout {q(commit)}" if commit != "unknown"
                else "# git commit unknown: use the code that built this report",
                "pip install -e '.[test]'",
                f"snakemake --cores 8 --configfile {q(config_path)}"]
    stats_cmd = (f"python -m rd stats --summary {q(summary_path)} " + " ".join(
        f"--comparison {q(a)} {q(b)}" for a, b in comparisons)
        + f" --primary-metric {q(config.get('primary_metric', 'image_auroc'))}"
        + f" --scores {q('results/runs/' + dataset['dataset'])}/*/*/*/*/scores.csv --out {q(stats_path)}")
    report_cmd = (f"python -m rd report --summary {q(summary_path)} --stats {q(stats_path)} --config {q(config_path)}"
                  + (" --data-manifests " + " ".join(q(m) for m in manifests) if manifests else "")
                  + f" --out {q(out)}" + (f" --figures-dir {q(figures_dir)}" if figures_dir else ""))
    one_run = one_run_commands(config)
    return {"pipeline": pipeline, "steps": [stats_cmd, report_cmd], "one_run": one_run,
            "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=None)}
