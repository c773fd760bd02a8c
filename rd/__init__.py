"""Reverse Distillation (Deng & Li, CVPR 2022) with interchangeable timm teachers.

The library behind the benchmark pipeline: models, data, training, anomaly maps,
metrics, complexity, statistics and the report. Each pipeline step calls it through
``python -m rd <command>``.
"""

__version__ = "0.1.0"
