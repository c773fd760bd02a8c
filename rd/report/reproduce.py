"""The "Reproduce" section: copy-pasteable commands that rebuild this report.

Every value taken from the config or from paths is shell-quoted: a category or path with a
space or a quote must not turn into a different command.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Sequence

from rd.report.inputs import dataset_of_config


def reproduce(config: dict, config_path: Path, summary_path: Path, stats_path: Path, manifests: Sequence,
              out: Path, comparisons: Sequence[tuple[str, str]], commit: str, figures_dir) -> dict:
    """``pipeline`` (whole workflow), ``steps`` (stats + report), ``one_run`` (train + evaluate
    of the first arm, category and seed) and the resolved config as YAML."""
    import yaml

    def q(x) -> str:
        return shlex.quote(str(x))

    dataset = dataset_of_config(config)
    pipeline = [f"git checkout {q(commit)}" if commit != "unknown"
                else "# git commit unknown: use the code that built this report",
                "pip install -e '.[test]'",
                f"snakemake --cores 8 --configfile {q(config_path)}"]
    stats_cmd = f"python -m rd stats --summary {q(summary_path)} " + " ".join(
        f"--comparison {q(a)} {q(b)}" for a, b in comparisons) + f" --out {q(stats_path)}"
    report_cmd = (f"python -m rd report --summary {q(summary_path)} --stats {q(stats_path)} --config {q(config_path)}"
                  + (" --data-manifests " + " ".join(q(m) for m in manifests) if manifests else "")
                  + f" --out {q(out)}" + (f" --figures-dir {q(figures_dir)}" if figures_dir else ""))
    one_run = []
    arms = config.get("arms") or []
    categories = dataset["categories"]
    seeds = config.get("seeds") or [0]
    if arms and categories:
        backbone, _, setting = str(arms[0]).partition("/")
        weights = ((config.get("backbones") or {}).get(backbone) or {}).get("weights", "none")
        setting_json = json.dumps((config.get("settings") or {}).get(setting, {}), separators=(",", ":"))
        run_dir = f"results/runs/{dataset['dataset']}/{categories[0]}/{backbone}/{setting}/seed{seeds[0]}"
        device = config.get("device", "auto")
        one_run = [f"python -m rd train --data-root {q(dataset['root'])} --category {q(categories[0])} "
                   f"--backbone {q(backbone)} --weights {q(weights)} --setting-name {q(setting)} "
                   f"--setting {q(setting_json)} --image-size {q(config.get('image_size'))} "
                   f"--epochs {q(config.get('epochs'))} --batch-size {q(config.get('batch_size'))} "
                   f"--seed {q(seeds[0])} --device {q(device)} --out-dir {q(run_dir)}",
                   f"python -m rd evaluate --data-root {q(dataset['root'])} --category {q(categories[0])} "
                   f"--model {q(run_dir + '/model.pt')} --device {q(device)} --out-dir {q(run_dir)}"]
    return {"pipeline": pipeline, "steps": [stats_cmd, report_cmd], "one_run": one_run,
            "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=None)}
