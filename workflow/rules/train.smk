# One job per run: (category, backbone, setting, seed). Everything that defines the run is an
# input or a param, so a change to one setting's values reruns exactly that setting's runs
# (Snakemake's params rerun trigger). The smoke file of the backbone gates training.


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
    conda:
        "../../environment.yml"
    shell:
        "{params.command} > {log:q} 2>&1"
