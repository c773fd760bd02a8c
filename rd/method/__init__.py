"""RD networks: frozen timm teacher, OCBE bottleneck, ResNet or ConvNeXt student."""

from rd.method.model import RD, RDSpec, StudentSpec, build_from_spec, build_rd, count_params, student_init_sha256
from rd.method.teacher import Teacher

__all__ = ["RD", "RDSpec", "StudentSpec", "Teacher", "build_rd", "build_from_spec", "count_params", "student_init_sha256"]
