# The same test protocol for every run: anomaly maps, image/pixel metrics, AUPRO, curves and
# the run's worst failure cases, written next to the model.


rule evaluate:
    input:
        manifest=MANIFEST,
        model=f"{RUN}/model.pt",
    output:
        metrics=f"{RUN}/metrics.json",
        scores=f"{RUN}/scores.csv",
        curves=f"{RUN}/curves.json",
        failure_cases=f"{RUN}/failure_cases.npz",
        threshold=f"{RUN}/threshold.json",
    params:
        command=evaluate_shell,
    log:
        f"logs/evaluate/{RUN_ID}.log",
    benchmark:
        f"results/benchmarks/evaluate/{RUN_ID}.tsv"
    threads: THREADS
    resources:
        mem_mb=resource("evaluate", "mem_mb"),
        runtime=resource("evaluate", "runtime"),
        gpu=GPU_PER_RUN,
    conda:
        "../../environment.yml"
    shell:
        "{params.command} > {log:q} 2>&1"
