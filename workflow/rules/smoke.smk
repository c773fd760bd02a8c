# Protocol step 2: every backbone builds its RD model and passes the shape/parameter check
# before any of its training jobs may start (train takes this file as input).


rule smoke:
    input:
        weights=weights_input,
    output:
        "results/smoke/{backbone}.json",
    params:
        weights=backbone_weights,
        model=backbone_model,
        student=student_flag,
        projection=projection_flag,
        student_output=student_output_flag,
        sizes=smoke_sizes(),
    log:
        "logs/smoke/{backbone}.log",
    benchmark:
        "results/benchmarks/smoke/{backbone}.tsv"
    threads: 1
    resources:
        mem_mb=resource("smoke", "mem_mb"),
        runtime=resource("smoke", "runtime"),
    conda:
        "../../environment.yml"
    shell:
        "python -m rd smoke --backbone {params.model} --student {params.student} --weights {params.weights:q}"
        " --image-sizes {params.sizes} {params.projection} {params.student_output} --out {output:q} > {log:q} 2>&1"
