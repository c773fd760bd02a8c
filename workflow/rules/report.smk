# The resolved config (what the report shows as "how this was run") and the HTML report.
# Figures are also marked for `snakemake --report`.


rule write_config:
    output:
        "results/config.json",
    params:
        text=resolved_config_json(),
    log:
        "logs/write_config.log",
    localrule: True
    threads: 1
    conda:
        "../../environment.yml"
    # A shell command, not a run directive: Snakemake runs a run-directive job in a fresh
    # Snakemake process (seconds of start-up); printf needs none.
    shell:
        "printf '%s' {params.text:q} > {output:q} && echo wrote {output:q} > {log:q}"


rule report:
    input:
        summary="results/summary.csv",
        stats="results/stats.csv",
        config="results/config.json",
        manifests=manifests(),
        smoke=expand("results/smoke/{backbone}.json", backbone=BACKBONES),
        history=run_files("history.csv"),
        curves=run_files("curves.json"),
        scores=run_files("scores.csv"),
        failure_cases=run_files("failure_cases.npz"),
    output:
        html=report(
            "reports/report.html",
            caption="../report/report_html.rst",
            category="Report",
        ),
        figures=report(
            directory("reports/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
        # results.md/.tex, stats.md/.tex (and per_category.md for MVTec): written by the report only
        tables=directory("reports/tables"),
    log:
        "logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    threads: 1
    resources:
        mem_mb=resource("report", "mem_mb"),
        runtime=resource("report", "runtime"),
    conda:
        "../../environment.yml"
    shell:
        "python -m rd report --summary {input.summary:q} --stats {input.stats:q}"
        " --config {input.config:q} --data-manifests {input.manifests:q}"
        " --smoke {input.smoke:q} --tables-dir {output.tables:q}"
        " --out {output.html:q} --figures-dir {output.figures:q} > {log:q} 2>&1"
