"""Assembly: frozen teacher -> OCBE bottleneck -> student decoder.

``build_rd`` picks the student family from the teacher: ResNet teachers get the paper's
ResNet student (block type, depths and width carried over from the backbone); ConvNeXt and
other timm teachers get the ConvNeXt student. Either can be forced with ``student=``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import timm
import torch
from torch import nn

from rd.method.bottleneck import OCBE
from rd.method.decoder_convnext import DeConvNeXt
from rd.method.decoder_resnet import DeResNet
from rd.method.teacher import PROJECTION_SEED, RESNET18_CHANNELS, Teacher, rd_out_indices
from rd.method.weights import TeacherWeights, check_backbone_name, create_backbone
from rd.params import (GUIDE_STUDENTS, PROJECTION_DEFAULT, PROJECTIONS, STUDENT_DEFAULT, STUDENT_FAMILIES,
                       STUDENT_OUTPUT_DEFAULT, STUDENT_OUTPUTS)


@dataclass(frozen=True)
class StudentSpec:
    """What the student looks like; derived from the teacher, stored with checkpoints."""

    family: str                    # "resnet" or "convnext"
    block: str                     # OCE block: "basic", "bottleneck" or "convnext"
    oce_depth: int
    decoder_depths: tuple[int, int, int]
    base_width: int = 64
    reference: str | None = None   # the timm ResNet whose student structure this copies
    output: str = STUDENT_OUTPUT_DEFAULT  # ResNet decoder's stage outputs: relu (official) | linear


@dataclass(frozen=True)
class RDSpec:
    """Everything needed to rebuild the same RD network (saved in ``model.pt``)."""

    backbone: str
    weights: str = "none"
    projection: str = PROJECTION_DEFAULT  # none | orthonormal | guide
    projection_channels: tuple[int, int, int] | None = None
    projection_seed: int | None = None
    student: StudentSpec | None = field(default=None)
    init_seed: int | None = None   # the student's own initialisation seed (None: torch's global RNG)

    def to_dict(self) -> dict:
        return asdict(self)


def _structure(backbone: str) -> nn.Module:
    """The full timm model on the meta device: free to build, tells block types and depths."""
    with torch.device("meta"):
        return timm.create_model(backbone.split(".")[0], pretrained=False)


# The ResNet whose student a non-ResNet teacher gets under ``student: resnet``: the one with the
# same stage channels (then the student is exactly that ResNet's), else resnet18's structure.
RESNET_BY_CHANNELS = {(64, 128, 256): "resnet18", (256, 512, 1024): "wide_resnet50_2"}


def _feature_info(backbone: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(RD's out indices, their channels) of ``backbone``'s feature stages, read on the meta device."""
    with torch.device("meta"):
        info = timm.create_model(backbone.split(".")[0], pretrained=False, features_only=True).feature_info
    indices = tuple(rd_out_indices(info.get_dicts()))
    return indices, tuple(info.channels()[i] for i in indices)


def _resnet_student(resnet: nn.Module, reference: str) -> StudentSpec:
    """The official RD4AD student of a ResNet: its block type, depths and width."""
    from timm.models.resnet import Bottleneck

    first = resnet.layer3[0]
    block = "bottleneck" if isinstance(first, Bottleneck) else "basic"
    base_width = 64
    if block == "bottleneck":  # width_per_group: width = planes * base_width / 64
        base_width = first.conv1.out_channels * 64 * 4 // first.conv3.out_channels
    depths = (len(resnet.layer1), len(resnet.layer2), len(resnet.layer3))
    return StudentSpec("resnet", block, len(resnet.layer4), depths, base_width, reference)


def derive_student(backbone: str, family: str = STUDENT_DEFAULT) -> StudentSpec:
    """The student for ``backbone``, following the official RD4AD choices.

    ``family``: ``auto`` (ResNet student for ResNet teachers, ConvNeXt otherwise), ``resnet``
    (a ResNet student: the teacher's own for a ResNet; for another teacher the student of the
    ResNet with the same channels, else resnet18's), ``convnext``, or the name of a timm ResNet
    whose student structure (block, depths, width) to use with the teacher's channels.
    """
    from timm.models.convnext import ConvNeXt
    from timm.models.resnet import ResNet

    full = _structure(backbone)
    if family == STUDENT_DEFAULT:
        family = "resnet" if isinstance(full, ResNet) else "convnext"
    if family == "resnet":
        if isinstance(full, ResNet):
            return _resnet_student(full, backbone.split(".")[0])
        family = RESNET_BY_CHANNELS.get(_feature_info(backbone)[1][:3], "resnet18")
    if family == "convnext":
        if isinstance(full, ConvNeXt):
            depths = tuple(len(stage.blocks) for stage in full.stages)
            return StudentSpec("convnext", "convnext", depths[3], depths[:3])  # type: ignore[arg-type]
        return StudentSpec("convnext", "convnext", 2, (2, 2, 2))
    if family in timm.list_models():
        reference = _structure(family)
        if isinstance(reference, ResNet):
            return _resnet_student(reference, family)
    raise ValueError(f"unknown student {family!r}: use auto, resnet, convnext or a timm ResNet name "
                     "(e.g. resnet18, wide_resnet50_2)")


class RD(nn.Module):
    """Reverse Distillation: ``forward(x) -> (teacher_feats, student_feats)``."""

    def __init__(self, teacher: Teacher, spec: RDSpec) -> None:
        super().__init__()
        assert spec.student is not None
        s = spec.student
        self.spec = spec
        self.teacher = teacher
        self.teacher_weights: TeacherWeights | None = None  # set by build_from_spec
        channels = teacher.channels
        # The student is drawn from its own generator seeded by the run's seed alone, after the
        # teacher was built: two arms whose students have one structure start bit-identical.
        with torch.random.fork_rng(devices=[]):
            if spec.init_seed is not None:
                torch.manual_seed(spec.init_seed)
            self.bottleneck = OCBE(channels, block=s.block, depth=s.oce_depth, base_width=s.base_width)
            if s.family == "resnet":
                block = "basic" if s.block == "basic" else "bottleneck"
                self.decoder: nn.Module = DeResNet(channels, block=block, depths=s.decoder_depths,
                                                   base_width=s.base_width, output=s.output)
            else:
                self.decoder = DeConvNeXt(channels, depths=s.decoder_depths)

    def student(self, teacher_feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The trainable part, separately callable so cached teacher features can be fed in."""
        return self.decoder(self.bottleneck(teacher_feats))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        t = self.teacher(x)
        return t, self.student(t)

    def student_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("teacher.")}

    def load_student_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load bottleneck + decoder weights; every student tensor must be present."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise RuntimeError(f"student weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")




def _projection_name(projection: bool | str) -> str:
    """Config values (false/true/guide) and CLI values (none/orthonormal/guide) -> one name."""
    if projection is True:
        return "orthonormal"
    if projection is False or projection is None:
        return "none"
    if projection not in PROJECTIONS:
        raise ValueError(f"unknown projection {projection!r}: use none, orthonormal or guide")
    return str(projection)


def build_rd(backbone: str, weights: str = "none", *, student: str = STUDENT_DEFAULT, student_output: str = STUDENT_OUTPUT_DEFAULT,
             projection: bool | str = PROJECTION_DEFAULT, init_seed: int | None = None) -> RD:
    """Build an RD network around a frozen timm ``backbone``.

    ``weights``: ``none``, ``imagenet`` or a weights-file path (see ``rd.method.weights``).
    ``student``: ``auto`` (ResNet student for ResNet teachers, ConvNeXt otherwise), ``resnet``,
    ``convnext`` or a timm ResNet name (see ``derive_student``). ``student_output``: ``relu``
    (the official ResNet student) or ``linear`` (no final ReLU per output stage).
    ``projection``: ``none``; ``orthonormal`` (or True): a frozen orthonormal 1x1 embedding of
    each teacher stage into the channels of the timm ResNet named by ``student``, whose student
    then follows exactly; ``guide``: the originally proposed frozen 1x1 conv + BN + ReLU to ResNet-18's
    64/128/256 and resnet18's student. ``init_seed``: the student's own initialisation seed
    (seed torch before calling for the random teacher).
    """
    check_backbone_name(backbone)
    if student_output not in STUDENT_OUTPUTS:
        raise ValueError(f"unknown student output {student_output!r}: use relu or linear")
    projection = _projection_name(projection)
    indices, native = _feature_info(backbone)
    proj: tuple[int, int, int] | None = None
    if projection == "orthonormal":
        if student in STUDENT_FAMILIES:
            raise ValueError(f"projection orthonormal embeds the teacher into the widths of a named student, "
                             f"but student is {student!r}: name a timm ResNet (e.g. student: wide_resnet50_2)")
        s_spec = derive_student(student, student)
        proj = _feature_info(student)[1][:3]  # type: ignore[assignment]
        narrower = [(a, b) for a, b in zip(native, proj) if b < a]
        if narrower:
            raise ValueError(f"projection orthonormal cannot reduce {backbone}'s channels {'/'.join(map(str, native))} "
                             f"to {student}'s {'/'.join(map(str, proj))} (an orthonormal embedding only widens)")
    elif projection == "guide":
        if student not in GUIDE_STUDENTS:
            raise ValueError(f"projection guide uses resnet18's student, not {student!r}")
        proj = RESNET18_CHANNELS  # type: ignore[assignment]
        s_spec = derive_student("resnet18", "resnet18")
    else:
        s_spec = derive_student(backbone, student)
    # The ConvNeXt student ends in ConvNeXt blocks (no final activation): its output is linear
    # whatever was asked; the ResNet student's is the requested one.
    s_spec = replace(s_spec, output=student_output if s_spec.family == "resnet" else "linear")
    spec = RDSpec(backbone=backbone, weights=str(weights), projection=projection, projection_channels=proj,
                  projection_seed=PROJECTION_SEED if proj else None, student=s_spec, init_seed=init_seed)
    return build_from_spec(spec, out_indices=indices)


def build_from_spec(spec: RDSpec, out_indices: Sequence[int] | None = None) -> RD:
    if out_indices is None:
        out_indices = _feature_info(spec.backbone)[0]
    backbone, source = create_backbone(spec.backbone, spec.weights, out_indices=tuple(out_indices))
    model = RD(Teacher(backbone, projection=spec.projection, projection_channels=spec.projection_channels), spec)
    model.teacher_weights = source
    return model


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def student_init_sha256(model: RD) -> str:
    """sha256 of the student's tensors (bottleneck + decoder, sorted keys, contiguous CPU bytes):
    equal for two arms exactly when their students start from the same weights."""
    import hashlib

    h = hashlib.sha256()
    for key, t in sorted(model.student_state_dict().items()):
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
