"""``python -m rd <command>``: the thin layer the Snakemake rules call.

Each command parses its arguments, calls the library, and writes its outputs atomically.
A user error (``RDError``) prints one line and exits 2; ``--debug`` shows the traceback.
Library imports happen inside the handlers so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
import warnings
from typing import Callable, Sequence

from rd import params
from rd.errors import RDError
from rd.files import user_error
from rd.metric_list import METRICS as METRIC_INFO

Handler = Callable[[argparse.Namespace], None]
STUDENT_HELP = ("auto (ResNet student for ResNet teachers, else ConvNeXt) | resnet | convnext | "
                "a timm ResNet whose student structure to copy (e.g. wide_resnet50_2)")
OUTPUT_HELP = ("relu: the official ResNet student (non-negative outputs) | linear: no final ReLU per output "
               "stage, so the student can fit signed teacher features")
PROJECTION_HELP = ("none | orthonormal: frozen orthonormal 1x1 embedding of the teacher stages into the widths "
                   "of the timm ResNet named by --student | guide: frozen 1x1 conv + BN + ReLU to 64/128/256 "
                   "and resnet18's student")
DATASET_HELP = "layout of --data-root: mvtec (also textures), visa, mvtec_ad2 or btad"


SETTING_FIX = 'Fix: pass a JSON object, e.g. \'{"optimizer": "adam", "lr": 0.005}\'.'
VALIDATION_FRACTION_ARG = params.arg(
    "validation_fraction", default=params.VALIDATION_FRACTION,
    help="fraction of train/good held out (never trained on; picked by the dataset seed) for the "
         "predict threshold and the lr selection; 0: the paper's split (MVTec AD 2: > 0 uses validation/good)")


def _json_arg(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}. {SETTING_FIX}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}. {SETTING_FIX}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error: ... Fix: ...`` line (exit 2), like every other error."""

    def error(self, message: str):  # type: ignore[override]
        line = message.strip()
        line += "" if line.endswith(".") else "."
        if " Fix: " not in line:
            line += f" Fix: see `{self.prog} --help`."
        self.exit(2, f"error: {line}\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM (SLURM's time limit, ``kill``): unwinds like Ctrl-C, so temporary files are removed."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


# --------------------------------------------------------------------------- prepare-data
def _add_prepare_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=params.DATASETS, required=True,
                   help="textures: generate the embedded dataset; mvtec, visa, mvtec_ad2, btad: validate a "
                        "user-given root in that dataset's own layout")
    p.add_argument("--root", required=True, help="dataset root (the folder holding the categories)")
    p.add_argument("--category", required=True, **params.arg("category", default=None))
    p.add_argument("--seed", **params.arg("seed", default=0, help="generation seed (textures only)"))
    p.add_argument("--n-train", **params.arg("n_train", help="textures: good training crops (default 100)"))
    p.add_argument("--n-test-good", **params.arg("n_test_good", help="textures: good test crops (default 20)"))
    p.add_argument("--n-per-defect", **params.arg("n_per_defect", help="textures: test crops per defect type (default 10)"))
    p.add_argument("--size", **params.arg("crop_size", help="textures: crop size in pixels (default 128)"))
    p.add_argument("--validation-fraction", **VALIDATION_FRACTION_ARG)
    p.add_argument("--out", required=True, help="manifest JSON (file list hash, counts, held-out images)")


def _run_prepare_data(a: argparse.Namespace) -> None:
    from rd.data import prepare_category

    options = {k: getattr(a, k) for k in ("n_train", "n_test_good", "n_per_defect", "size")
               if getattr(a, k) is not None}
    prepare_category(a.dataset, a.root, a.category, seed=a.seed, manifest_path=a.out, generate_options=options,
                     validation_fraction=a.validation_fraction)


# --------------------------------------------------------------------------- smoke
def _add_smoke(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", required=True)
    p.add_argument("--weights", default="none")
    p.add_argument("--image-sizes", nargs="+", **params.arg("image_size", default=[128, 256]))
    p.add_argument("--student", default=params.STUDENT_DEFAULT, help=STUDENT_HELP)
    p.add_argument("--student-output", choices=params.STUDENT_OUTPUTS, default=params.STUDENT_OUTPUT_DEFAULT,
                   help=OUTPUT_HELP)
    p.add_argument("--projection", choices=params.PROJECTIONS, default=params.PROJECTION_DEFAULT,
                   help=PROJECTION_HELP)
    p.add_argument("--data-root", default=None, help="measure negative_fraction/loss_floor on this dataset's "
                                                      "training images (default: a seeded random batch)")
    p.add_argument("--dataset", choices=params.DATASETS, default="mvtec", help=DATASET_HELP)
    p.add_argument("--category", default=None, help="the category whose training images to use (with --data-root)")
    p.add_argument("--out", required=True)


def _run_smoke(a: argparse.Namespace) -> None:
    from rd.smoke import smoke_test

    if (a.data_root is None) != (a.category is None):
        raise RDError("--data-root and --category go together.", "pass both, or neither for a random batch.")
    smoke_test(a.backbone, weights=a.weights, image_sizes=a.image_sizes, projection=a.projection,
               student=a.student, student_output=a.student_output, data_root=a.data_root,
               dataset=a.dataset, category=a.category, out=a.out)


# --------------------------------------------------------------------------- complexity
def _add_complexity(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", required=True)
    p.add_argument("--image-size", required=True, **params.arg("image_size", default=None))
    p.add_argument("--batch-size", **params.arg("throughput_batch_size", default=16))
    p.add_argument("--threads", **params.arg("threads"))
    p.add_argument("--device", **params.arg("complexity_device", default="cpu"))
    p.add_argument("--projection", choices=params.PROJECTIONS, default=params.PROJECTION_DEFAULT,
                   help=PROJECTION_HELP)
    p.add_argument("--student", default=params.STUDENT_DEFAULT, help=STUDENT_HELP)
    p.add_argument("--student-output", choices=params.STUDENT_OUTPUTS, default=params.STUDENT_OUTPUT_DEFAULT,
                   help=OUTPUT_HELP)
    p.add_argument("--name", default=None, help="the backbone's name in the config (default: --backbone)")
    p.add_argument("--out", required=True)


def _run_complexity(a: argparse.Namespace) -> None:
    from rd.complexity import measure_complexity

    measure_complexity(a.backbone, image_size=a.image_size, batch_size=a.batch_size,
                       threads=a.threads, device=a.device, projection=a.projection,
                       student=a.student, student_output=a.student_output, name=a.name, out=a.out)


# --------------------------------------------------------------------------- train
def _add_train_options(p: argparse.ArgumentParser) -> None:
    """What defines a training run (``train`` and ``lr-select`` share them)."""
    p.add_argument("--data-root", required=True)
    p.add_argument("--dataset", choices=params.DATASETS, default="mvtec", help=DATASET_HELP)
    p.add_argument("--category", required=True, **params.arg("category", default=None))
    p.add_argument("--backbone", required=True)
    p.add_argument("--weights", default="none",
                   help="none | imagenet (ImageNet-1k only) | <model>.<tag> | path to .pth/.safetensors")
    p.add_argument("--student", default=params.STUDENT_DEFAULT, help=STUDENT_HELP)
    p.add_argument("--name", default="", help="the backbone's name in the config, runs are filed under it "
                                              "(default: --backbone)")
    p.add_argument("--student-output", choices=params.STUDENT_OUTPUTS, default=params.STUDENT_OUTPUT_DEFAULT,
                   help=OUTPUT_HELP)
    p.add_argument("--projection", choices=params.PROJECTIONS, default=params.PROJECTION_DEFAULT,
                   help=PROJECTION_HELP)
    p.add_argument("--setting-name", default="baseline")
    p.add_argument("--setting", type=_json_arg, default={},
                   help='JSON, e.g. {"optimizer": "adam", "lr": 0.005, "betas": [0.5, 0.999]}')
    # defaults: the paper's recipe (rd.params.RECIPE), the same as TrainConfig's
    p.add_argument("--image-size", **params.arg("image_size"))
    p.add_argument("--epochs", **params.arg("epochs"))
    p.add_argument("--batch-size", **params.arg("batch_size"))
    p.add_argument("--seed", **params.arg("seed"))
    p.add_argument("--device", **params.arg("device"))
    p.add_argument("--threads", **params.arg("threads"))
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--eval-every", **params.arg("eval_every"))
    p.add_argument("--no-feature-cache", action="store_true",
                   help="recompute teacher features each step instead of caching them once")
    p.add_argument("--validation-fraction", **VALIDATION_FRACTION_ARG)
    p.add_argument("--data-seed", **params.arg("seed", default=0, help="the dataset seed: picks the held-out images"))


def _add_train(p: argparse.ArgumentParser) -> None:
    _add_train_options(p)
    p.add_argument("--lr-selection", default=None, metavar="FILE",
                   help="results/lr/<backbone>/<setting>.json of the workflow's lr selection: its chosen lr "
                        "replaces the setting's (recorded in train.json as lr_selection)")
    p.add_argument("--stage-evaluation", action="store_true",
                   help="also evaluate the trained run in this process and stage the outputs in "
                        "<out-dir>/.evaluation-staged for `evaluate` to publish (same numbers, no second model load)")
    p.add_argument("--failure-cases", **params.arg("failure_cases", default=4,
                                                   help="with --stage-evaluation: as `evaluate --failure-cases`"))
    p.add_argument("--checkpoint-every", metavar="SECONDS",
                   **params.arg("checkpoint_every", default=params.CHECKPOINT_EVERY_S,
                                help="write the resume checkpoint after an epoch once this many seconds passed "
                                     "since the last one (0: every epoch; never after the last); changes no number"))
    p.add_argument("--out-dir", required=True)


def _train_config(a: argparse.Namespace, **override):
    """The TrainConfig of the parsed train options (the setting checked before any heavy import)."""
    params.check_setting(a.setting, a.epochs, where="--setting")
    from rd.run import TrainConfig

    values = dict(
        data_root=a.data_root, category=a.category, backbone=a.backbone, dataset=a.dataset, weights=a.weights,
        projection=a.projection, student=a.student, student_output=a.student_output, name=a.name, setting_name=a.setting_name, setting=a.setting,
        image_size=a.image_size, epochs=a.epochs, batch_size=a.batch_size, seed=a.seed,
        device=a.device, threads=a.threads, bf16=a.bf16, eval_every=a.eval_every,
        feature_cache=not a.no_feature_cache, validation_fraction=a.validation_fraction, data_seed=a.data_seed,
    )
    return TrainConfig(**{**values, **override})


def _run_train(a: argparse.Namespace) -> None:
    override = {}
    if a.lr_selection:
        from rd.lr_select import read_selection

        selection = read_selection(a.lr_selection, a.name or a.backbone, a.setting_name)
        override = {"setting": {**a.setting, "lr": selection["chosen"]}, "lr_selection": selection}
    from rd.train import train

    train(_train_config(a, **override), a.out_dir, stage_evaluation=a.stage_evaluation,
          failure_cases=a.failure_cases, checkpoint_every=a.checkpoint_every)


# --------------------------------------------------------------------------- lr selection
def _add_lr_select(p: argparse.ArgumentParser) -> None:
    _add_train_options(p)
    p.add_argument("--lr", required=True, **params.arg("lr", default=None, help="the grid value to try"))
    p.add_argument("--select-epochs", required=True, **params.arg("lr_select_epochs", default=None))
    p.add_argument("--out", required=True, help="JSON: this lr's mean distillation loss on the held-out good images")


def _run_lr_select(a: argparse.Namespace) -> None:
    from rd.lr_select import selection_run

    selection_run(_train_config(a), a.lr, a.select_epochs, a.out)


def _add_lr_gather(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", nargs="+", required=True, help="the per-lr JSONs written by lr-select")
    p.add_argument("--out", required=True, help="results/lr/<backbone>/<setting>.json: grid, losses, chosen lr")


def _run_lr_gather(a: argparse.Namespace) -> None:
    from rd.lr_select import gather

    gather(a.runs, a.out)


# --------------------------------------------------------------------------- evaluate
def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", required=True)
    p.add_argument("--dataset", choices=params.DATASETS, default=None,
                   help=DATASET_HELP + " (default: the dataset the model was trained on)")
    p.add_argument("--category", required=True, **params.arg("category", default=None))
    p.add_argument("--model", required=True, help="model.pt written by train")
    p.add_argument("--device", **params.arg("device"))
    p.add_argument("--threads", **params.arg("threads"))
    p.add_argument("--failure-cases", **params.arg("failure_cases", default=4,
                                                   help="top-k missed defects and false alarms kept"))
    p.add_argument("--out-dir", required=True)


def _run_evaluate(a: argparse.Namespace) -> None:
    from rd import staging

    # What training staged for this model and these options is published without importing
    # torch (a sub-second job); anything else is evaluated in full.
    options = staging.evaluation_options(data_root=a.data_root, category=a.category, dataset=a.dataset,
                                         failure_cases=a.failure_cases, device=a.device)
    if staging.publish(a.model, a.out_dir, options):
        print(f"published the evaluation staged by training for {a.model}", file=sys.stderr)
        return
    from rd.evaluate import evaluate_run

    evaluate_run(a.model, data_root=a.data_root, category=a.category, out_dir=a.out_dir,
                 device=a.device, threads=a.threads, failure_cases=a.failure_cases, dataset=a.dataset)


# --------------------------------------------------------------------------- aggregate / stats / report
def _add_aggregate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", nargs="+", required=True, help="run folders (each with metrics.json, train.json)")
    p.add_argument("--complexity", nargs="*", default=[], help="complexity JSON files, one per backbone")
    p.add_argument("--benchmarks", nargs="*", default=[], help="Snakemake benchmark TSVs")
    p.add_argument("--out", required=True, help="summary.csv")


def _run_aggregate(a: argparse.Namespace) -> None:
    from rd.aggregate import write_summary

    write_summary(a.runs, complexity=a.complexity, benchmarks=a.benchmarks, out=a.out)


def _add_stats(p: argparse.ArgumentParser) -> None:
    p.add_argument("--summary", required=True)
    p.add_argument("--comparison", nargs=2, action="append", metavar=("ARM_A", "ARM_B"), default=[],
                   help="two arms as backbone/setting; repeat for more comparisons (none: header-only file)")
    p.add_argument("--primary-metric", default="image_auroc", choices=[m.name for m in METRIC_INFO],
                   help="the metric that carries the verdicts; the others are exploratory (default image_auroc)")
    p.add_argument("--scores", nargs="*", default=[],
                   help="the runs' scores.csv files: adds the per-category test-set uncertainty "
                        "(per_category_images rows, paired stratified bootstrap over test images)")
    p.add_argument("--out", required=True, help="stats.csv")


def _run_stats(a: argparse.Namespace) -> None:
    from rd.stats import write_stats

    write_stats(a.summary, comparisons=[tuple(c) for c in a.comparison], out=a.out,
                primary_metric=a.primary_metric, scores=a.scores)


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--summary", required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--config", required=True, help="resolved config (JSON or YAML)")
    p.add_argument("--data-manifests", nargs="*", default=[], help="prepare-data manifests")
    p.add_argument("--out", required=True, help="report.html")
    p.add_argument("--figures-dir", default=None, help="also write the main figures here as PNG")
    p.add_argument("--smoke", nargs="*", default=[],
                   help="the backbones' smoke JSON files (results/smoke/<backbone>.json): signed teacher features")
    p.add_argument("--tables-dir", default=None,
                   help="where the paper tables go (results/stats .md/.tex; default: tables/ beside --out)")


def _run_report(a: argparse.Namespace) -> None:
    from rd.report import build_report

    build_report(summary=a.summary, stats=a.stats, config=a.config, manifests=a.data_manifests,
                 out=a.out, figures_dir=a.figures_dir, smoke=a.smoke, tables_dir=a.tables_dir)


# --------------------------------------------------------------------------- predict / export
def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (holding model.pt, threshold.json, metrics.json) or its model.pt")
    p.add_argument("images", nargs="+", help="image files, folders (recursive) or list files (.txt, one path a line)")
    p.add_argument("--out", required=True, help="output folder: predictions.csv and figures/")
    p.add_argument("--threshold", default="good",
                   help="good (default: 0.99 quantile of the run's held-out good scores) | f1max (the test set's, "
                        "optimistic) | a number")
    p.add_argument("--device", default=params.DEVICE_DEFAULT, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--batch-size", **params.arg("inference_batch_size", default=16))
    p.add_argument("--threads", **params.arg("threads", default=None, help="CPU threads (default: torch's)"))
    p.add_argument("--no-images", action="store_true", help="scores only, no PNG per image")


def _run_predict(a: argparse.Namespace) -> None:
    from rd.use.predict import predict_images

    predict_images(a.run, a.images, a.out, threshold=a.threshold, device=a.device, batch_size=a.batch_size,
                   figures=not a.no_images, threads=a.threads)


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder or its model.pt")
    p.add_argument("--out", required=True, help="FILE.onnx (FILE.json is written beside it)")
    p.add_argument("--threshold", default="good", help="threshold recorded in FILE.json: good | f1max | a number")
    p.add_argument("--opset", **params.arg("opset", default=17))


def _run_export(a: argparse.Namespace) -> None:
    from rd.use.export import export_onnx

    export_onnx(a.run, a.out, threshold=a.threshold, opset=a.opset)


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "prepare-data": ("generate the embedded dataset or validate a given root", _add_prepare_data, _run_prepare_data),
    "smoke": ("build a backbone's RD and check shapes and parameters (gates training)", _add_smoke, _run_smoke),
    "complexity": ("FLOPs (fvcore), parameters, latency and throughput", _add_complexity, _run_complexity),
    "train": ("train one run: category x backbone x setting x seed", _add_train, _run_train),
    "lr-select": ("train one lr of a setting's lr_grid and measure its held-out loss", _add_lr_select,
                  _run_lr_select),
    "lr-gather": ("choose the lr with the lowest held-out loss -> results/lr/<backbone>/<setting>.json",
                  _add_lr_gather, _run_lr_gather),
    "evaluate": ("anomaly maps, metrics and failure cases of one run", _add_evaluate, _run_evaluate),
    "aggregate": ("one row per run -> summary.csv", _add_aggregate, _run_aggregate),
    "stats": ("paired tests between arms -> stats.csv", _add_stats, _run_stats),
    "report": ("the self-contained HTML report", _add_report, _run_report),
    "predict": ("score new images with a trained run -> predictions.csv and figures", _add_predict, _run_predict),
    "export": ("a trained run as one ONNX file (maps and image scores) + its JSON", _add_export, _run_export),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m rd", description="Reverse Distillation benchmark steps (each writes its outputs atomically).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.debug:
        warnings.formatwarning = _one_line_warning
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        COMMANDS[args.command][2](args)
    except RDError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - rd.files.user_error decides: the user's problem (one line) or a bug
        targets = [f"--{k.replace('_', '-')} {getattr(args, k)}" for k in ("root", "out_dir", "out")
                   if getattr(args, k, None)]
        error = user_error(exc, args.command, targets)
        if error is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # Ctrl-C and SIGTERM (SLURM, kill) alike: rd.files's writers removed their temporary files on the way out.
        if isinstance(exc, Terminated):
            print("error: terminated (SIGTERM); outputs written so far are complete, rerun to continue.",
                  file=sys.stderr)
            return 128 + signal.SIGTERM
        print("error: interrupted; outputs written so far are complete, rerun to continue.", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
