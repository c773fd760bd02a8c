# Protocol: the same data for every arm. The embedded `textures` dataset is generated here
# (the category folder is an output, so deleting it regenerates it); a user-given root
# (`mvtec`, `visa`, `mvtec_ad2`, `btad`) is only validated, by that dataset's reader. Either
# way the manifest (counts + file-list hash) is what training depends on, and the report shows it.


rule prepare_data:
    output:
        manifest=f"results/data/{DATASET}/{{category}}.json",
        **({"data": directory(f"{ROOT}/{{category}}")} if GENERATED else {}),
    params:
        dataset=DATASET,
        root=lambda wildcards: ROOT,
        seed=config["dataset"]["seed"],
        generate=generate_flags(),
    log:
        f"logs/prepare_data/{DATASET}/{{category}}.log",
    benchmark:
        f"results/benchmarks/prepare_data/{DATASET}/{{category}}.tsv"
    threads: 1
    resources:
        mem_mb=resource("prepare_data", "mem_mb"),
        runtime=resource("prepare_data", "runtime"),
    conda:
        "../../environment.yml"
    shell:
        "python -m rd prepare-data --dataset {params.dataset} --root {params.root:q}"
        " --category {wildcards.category} --seed {params.seed} {params.generate}"
        " --out {output.manifest:q}"
        " > {log:q} 2>&1"
