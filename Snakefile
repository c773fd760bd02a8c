# Reverse Distillation backbone benchmark: one Snakemake job per
# (category, backbone, setting, seed) run, from data to reports/report.html.
#
#   snakemake --cores 8                                   # the default config.yaml
#   snakemake --cores 8 --configfile workflow/configs/mvtec_ad.yaml --config 'dataset={root: /path/to/mvtec}'
#   snakemake --workflow-profile workflow/profiles/slurm  # on a SLURM cluster
#
# Rules call the `rd` command line (`python -m rd <command>`); the library does the work,
# Snakemake does caching, reruns, scheduling and cluster submission.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    # category: rd.params.CATEGORY_PATTERN (one folder name, never "." or "..")
    category=r"[A-Za-z0-9_-][A-Za-z0-9_.-]*",
    backbone=r"[A-Za-z0-9_.]+",
    setting=r"[A-Za-z0-9_.-]+",
    seed=r"[0-9]+",
    lr=r"[0-9][0-9.eE+-]*",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/smoke.smk"
include: "workflow/rules/complexity.smk"
include: "workflow/rules/lr_select.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/predict_common.smk"
include: "workflow/rules/predict.smk"


RUN_TARGETS = [str(path).format(**run) for run in runs() for path in (*rules.train.output, *rules.evaluate.output)]


rule all:
    default_target: True
    input:
        "reports/report.html",
        # Every run's own files are targets too: Snakemake does not rebuild a missing file while
        # what was made from it (summary.csv, the report) is present, so without them a run
        # folder deleted by hand would stay deleted (docs/disk-use.md).
        RUN_TARGETS,
        PREDICT_TARGETS,  # [] unless the config's `predict` is set
        DATA_MARKERS,  # textures: the generated folders ([] for a dataset you provide)
