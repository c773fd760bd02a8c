# A setting with `lr_grid` chooses its learning rate on held-out good images, never on test
# labels: per arm, one job per grid value trains the arm (the first category, the first seed,
# `lr_select_epochs` epochs, the training split only) and measures its mean distillation loss on
# the category's held-out good images; lr_gather picks the lowest (ties: the smaller lr) into
# results/lr/<backbone>/<setting>.json, an input of every train job of that arm.


rule lr_select:
    input:
        manifest=MANIFEST.format(dataset=DATASET, category=CATEGORIES[0]),
        smoke="results/smoke/{backbone}.json",
        weights=weights_input,
    output:
        f"{LR_RUN}.json",
    params:
        # the arm's command, from the one builder of run commands (rd.commands)
        command=lr_select_shell,
    log:
        "logs/lr_select/{backbone}/{setting}/lr{lr}.log",
    threads: THREADS
    resources:
        mem_mb=resource("train", "mem_mb"),
        runtime=resource("train", "runtime"),
        gpu=GPU_PER_RUN,
    conda:
        "../../environment.yml"
    shell:
        "{params.command} > {log:q} 2>&1"


rule lr_gather:
    input:
        lr_runs,
    output:
        LR_SELECTION,
    log:
        "logs/lr_gather/{backbone}/{setting}.log",
    localrule: True
    threads: 1
    conda:
        "../../environment.yml"
    shell:
        "python -m rd lr-gather --runs {input:q} --out {output:q} > {log:q} 2>&1"
