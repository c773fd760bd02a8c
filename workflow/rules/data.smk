# Protocol: the same data for every arm. The embedded `textures` dataset is generated here.
# No rule owns a data folder: Snakemake deletes a failed job's outputs, so the declared output
# is the generator's last-written file `generated.done` inside the category folder (deleting the
# folder still regenerates it; a folder the generator did not make is refused, never written),
# and the manifest under results/. A user-given root
# (`mvtec`, `visa`, `mvtec_ad2`, `btad`) is only validated, by that dataset's reader. Either
# way the manifest (counts + file-list hash + the held-out good images and their hash) is what
# training depends on, and the report shows it: a changed validation_fraction or seed rewrites it
# (a params change) and so reruns every run of the category.


rule prepare_data:
    output:
        manifest=f"results/data/{DATASET}/{{category}}.json",
        **({"data": f"{ROOT}/{{category}}/{GENERATED_DONE}"} if GENERATED else {}),
    params:
        dataset=DATASET,
        root=lambda wildcards: ROOT,
        seed=config["dataset"]["seed"],
        validation_fraction=VALIDATION_FRACTION,
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
        " --validation-fraction {params.validation_fraction}"
        " --out {output.manifest:q}"
        " > {log:q} 2>&1"
