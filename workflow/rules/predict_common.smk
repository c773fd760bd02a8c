# Helpers of the optional predict step (its rule is in workflow/rules/predict.smk), functions
# only: the target, the inputs and flags.


def _predict_targets():
    """[predictions.csv] when `predict` is configured, else []."""
    spec = config.get("predict")
    if not spec:
        return []
    seed = spec.get("seed", 0)  # the block was checked with the rest of the config (rd.config_check)
    backbone, setting = split_arm(spec["arm"])
    return [f"results/predict/{DATASET}/{spec['category']}/{backbone}/{setting}/seed{seed}/predictions.csv"]


def predict_images():
    images = (config.get("predict") or {}).get("images") or []
    return [images] if isinstance(images, str) else list(images)


def predict_flags():
    spec = config.get("predict") or {}
    return "" if spec.get("figures", True) else "--no-images"



PREDICT_TARGETS = _predict_targets()
