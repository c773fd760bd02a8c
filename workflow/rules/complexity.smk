# Fairness checklist: FLOPs (fvcore) and parameters of each backbone's RD model at the run's
# input size, plus latency and throughput on the configured device.


rule complexity:
    input:
        smoke="results/smoke/{backbone}.json",
    output:
        "results/complexity/{backbone}.json",
    params:
        image_size=config["image_size"],
        batch_size=config["complexity"]["batch_size"],
        device=config["complexity"]["device"],
        projection=projection_flag,
        student_output=student_output_flag,
        model=backbone_model,
        student=student_flag,
    log:
        "logs/complexity/{backbone}.log",
    benchmark:
        "results/benchmarks/complexity/{backbone}.tsv"
    threads: THREADS
    resources:
        mem_mb=resource("complexity", "mem_mb"),
        runtime=resource("complexity", "runtime"),
        gpu=GPU_COMPLEXITY,
    conda:
        "../../environment.yml"
    shell:
        "python -m rd complexity --backbone {params.model} --name {wildcards.backbone} --student {params.student}"
        " --image-size {params.image_size}"
        " --batch-size {params.batch_size} --threads {threads} --device {params.device}"
        " {params.projection} {params.student_output} --out {output:q} > {log:q} 2>&1"
