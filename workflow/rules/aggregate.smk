# One row per run (results/summary.csv), then paired statistics between the configured
# comparisons (results/stats.csv).


rule aggregate:
    input:
        metrics=run_files("metrics.json"),
        info=run_files("train.json"),
        complexity=expand("results/complexity/{backbone}.json", backbone=BACKBONES),
        train_benchmarks=benchmark_files("train"),
        evaluate_benchmarks=benchmark_files("evaluate"),
    output:
        "results/summary.csv",
    params:
        runs=lambda wildcards, input: [os.path.dirname(path) for path in input.metrics],
    log:
        "logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    threads: 1
    resources:
        mem_mb=resource("aggregate", "mem_mb"),
        runtime=resource("aggregate", "runtime"),
    conda:
        "../../environment.yml"
    shell:
        "python -m rd aggregate --runs {params.runs:q} --complexity {input.complexity:q}"
        " --benchmarks {input.train_benchmarks:q} {input.evaluate_benchmarks:q}"
        " --out {output:q} > {log:q} 2>&1"


rule stats:
    input:
        summary="results/summary.csv",
        # per-image scores: the per-category test-set uncertainty (paired bootstrap over test images)
        scores=run_files("scores.csv"),
    output:
        "results/stats.csv",
    params:
        comparisons=[arm for pair in config["comparisons"] for arm in ("--comparison", *pair)],
        primary_metric=config["primary_metric"],
    log:
        "logs/stats.log",
    benchmark:
        "results/benchmarks/stats.tsv"
    threads: 1
    resources:
        mem_mb=resource("stats", "mem_mb"),
        runtime=resource("stats", "runtime"),
    conda:
        "../../environment.yml"
    shell:
        "python -m rd stats --summary {input.summary:q} {params.comparisons:q}"
        " --primary-metric {params.primary_metric} --scores {input.scores:q}"
        " --out {output:q} > {log:q} 2>&1"
