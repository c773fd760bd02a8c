# One job per run: (category, backbone, setting, seed). Everything that defines the run is an
# input or a param, so a change to one setting's values reruns exactly that setting's runs
# (Snakemake's params rerun trigger). The smoke file of the backbone gates training.
# The job also evaluates the run it trained (rd.staging): the evaluate job publishes that.


rule train:
    input:
        manifest=MANIFEST,
        smoke="results/smoke/{backbone}.json",
        weights=weights_input,
    output:
        model=f"{RUN}/model.pt",
        history=f"{RUN}/history.csv",
        info=f"{RUN}/train.json",
    params:
        root=ROOT,
        dataset=DATASET,
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
        weights=backbone_weights,
        model=backbone_model,
        student=student_flag,
        projection=projection_flag,
        setting=setting_json,
        image_size=config["image_size"],
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        device=config["device"],
        eval_every=config["eval_every"],
        flags=train_flags(),
    log:
        f"logs/train/{RUN_ID}.log",
    benchmark:
        f"results/benchmarks/train/{RUN_ID}.tsv"
    threads: THREADS
    resources:
        mem_mb=resource("train", "mem_mb"),
        runtime=resource("train", "runtime"),
        gpu=GPU_PER_RUN,
        stage_failure_cases=int(config["failure_cases"]),
    conda:
        "../../environment.yml"
    shell:
        "python -m rd train --data-root {params.root:q} --dataset {params.dataset} --category {wildcards.category}"
        " --backbone {params.model} --name {wildcards.backbone} --student {params.student}"
        " --weights {params.weights:q} {params.projection}"
        " --setting-name {wildcards.setting} --setting {params.setting:q}"
        " --image-size {params.image_size} --epochs {params.epochs} --batch-size {params.batch_size}"
        " --seed {wildcards.seed} --device {params.device} --threads {threads}"
        " --eval-every {params.eval_every} {params.flags} --out-dir {params.out_dir:q}"
        # Evaluate here too and stage it for the evaluate job, which then only publishes it.
        # A resource, not a param: a changed failure_cases re-evaluates (the evaluate rule's
        # param), never retrains.
        " --stage-evaluation --failure-cases {resources.stage_failure_cases}"
        " > {log:q} 2>&1"
