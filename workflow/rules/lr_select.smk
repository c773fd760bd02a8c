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
        root=ROOT,
        dataset=DATASET,
        category=CATEGORIES[0],
        seed=SEEDS[0],
        weights=backbone_weights,
        model=backbone_model,
        student=student_flag,
        projection=projection_flag,
        setting=setting_json,
        select_epochs=lr_select_epochs,
        image_size=config["image_size"],
        batch_size=config["batch_size"],
        device=config["device"],
        validation_fraction=VALIDATION_FRACTION,
        data_seed=DATA_SEED,
        flags=train_flags(),
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
        "python -m rd lr-select --data-root {params.root:q} --dataset {params.dataset} --category {params.category}"
        " --backbone {params.model} --name {wildcards.backbone} --student {params.student}"
        " --weights {params.weights:q} {params.projection}"
        " --setting-name {wildcards.setting} --setting {params.setting:q} --lr {wildcards.lr}"
        " --select-epochs {params.select_epochs}"
        " --image-size {params.image_size} --batch-size {params.batch_size}"
        " --seed {params.seed} --device {params.device} --threads {threads} {params.flags}"
        " --validation-fraction {params.validation_fraction} --data-seed {params.data_seed}"
        " --out {output:q} > {log:q} 2>&1"


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
