# One job per run: (category, backbone, setting, seed). Everything that defines the run is an
# input or a param, so a change to one setting's values reruns exactly that setting's runs
# (Snakemake's params rerun trigger). The smoke file of the backbone gates training.
# The job also evaluates the run it trained (rd.staging): the evaluate job publishes that.


rule train:
    input:
        manifest=MANIFEST,
        smoke="results/smoke/{backbone}.json",
        weights=weights_input,
        lr_selection=lr_selection_input,
    output:
        model=f"{RUN}/model.pt",
        history=f"{RUN}/history.csv",
        info=f"{RUN}/train.json",
    params:
        # the whole command as one param (rd.commands.train_command, also printed by the report)
        command=train_shell,
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
        # Evaluate here too and stage it for the evaluate job, which then only publishes it.
        # A resource, not a param: a changed failure_cases re-evaluates (the evaluate rule's
        # param), never retrains.
        "{params.command} --stage-evaluation --failure-cases {resources.stage_failure_cases} > {log:q} 2>&1"
