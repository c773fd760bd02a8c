# Optional: score the user's own images with one trained run (config key `predict`, off when
# null). Nothing is retrained; the run's model.pt and its good-image threshold are used.


rule predict:
    input:
        model=f"{RUN}/model.pt",
        # metrics.json is evaluate's last output: threshold.json (the default threshold) is there
        metrics=f"{RUN}/metrics.json",
        images=predict_images(),
    output:
        predictions=f"results/predict/{RUN_ID}/predictions.csv",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.predictions),
        threshold=lambda wildcards: (config.get("predict") or {}).get("threshold", "good"),
        device=config["device"],
        flags=predict_flags(),
    log:
        f"logs/predict/{RUN_ID}.log",
    threads: THREADS
    resources:
        mem_mb=resource("evaluate", "mem_mb"),
        runtime=resource("evaluate", "runtime"),
        gpu=GPU_PER_RUN,
    conda:
        "../../environment.yml"
    shell:
        "python -m rd predict {input.model:q} {input.images:q} --out {params.out_dir:q}"
        " --threshold {params.threshold:q} --device {params.device} --threads {threads} {params.flags}"
        " > {log:q} 2>&1"
