# Helpers of the optional predict step (its rule is in workflow/rules/predict.smk), functions
# only: the check that the config's `predict` block names a real run, the inputs and flags.


def _predict_targets():
    """[predictions.csv] when `predict` is configured (after checking it names a real run), else []."""
    spec = config.get("predict")
    if not spec:
        return []
    lines = []
    if spec["arm"] not in config["arms"]:
        lines.append(f"predict.arm: '{spec['arm']}' is not one of the arms ({', '.join(config['arms'])})."
                     f"{_closest(spec['arm'], config['arms'])}")
    if spec["category"] not in CATEGORIES:
        lines.append(f"predict.category: '{spec['category']}' is not one of dataset.categories "
                     f"({', '.join(CATEGORIES)}).{_closest(spec['category'], CATEGORIES)}")
    seed = spec.get("seed", 0)
    if seed not in SEEDS:
        lines.append(f"predict.seed: {seed} is not one of the seeds ({', '.join(map(str, SEEDS))}).")
    missing = [p for p in predict_images() if not os.path.exists(p)]
    if missing:
        lines.append(f"predict.images: {', '.join(missing)} does not exist.")
    if lines:
        raise WorkflowError("Invalid configuration (nothing was run):\n  - " + "\n  - ".join(lines)
                            + f"\nFix: {FIX_HINT}")
    backbone, setting = split_arm(spec["arm"])
    return [f"results/predict/{DATASET}/{spec['category']}/{backbone}/{setting}/seed{seed}/predictions.csv"]


def predict_images():
    images = (config.get("predict") or {}).get("images") or []
    return [images] if isinstance(images, str) else list(images)


def predict_flags():
    spec = config.get("predict") or {}
    return "" if spec.get("figures", True) else "--no-images"



PREDICT_TARGETS = _predict_targets()
