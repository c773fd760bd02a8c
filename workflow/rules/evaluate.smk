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
        root=ROOT,
        dataset=DATASET,
        out_dir=lambda wildcards, output: os.path.dirname(output.metrics),
        device=config["device"],
        failure_cases=config["failure_cases"],
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
        "python -m rd evaluate --data-root {params.root:q} --dataset {params.dataset} --category {wildcards.category}"
        " --model {input.model:q} --device {params.device} --threads {threads}"
        " --failure-cases {params.failure_cases} --out-dir {params.out_dir:q} > {log:q} 2>&1"
