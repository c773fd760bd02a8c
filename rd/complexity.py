"""FLOPs (fvcore), parameters, latency and throughput of an RD network.

fvcore counts one fused multiply-add as one FLOP (so a 3x3 conv costs k*k*Cin*Cout*H*W),
which is the convention of published backbone numbers (ResNet-50: 4.1 G at 224 px). Ops
fvcore has no handle for (GELU, LayerNorm's elementwise parts, ...) are gathered by name and
count in the JSON instead of flooding the log; they are cheap next to the convolutions.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils import benchmark

from rd import files
from rd.method import build_rd, count_params
from rd.params import PROJECTION_DEFAULT, STUDENT_DEFAULT, STUDENT_OUTPUT_DEFAULT

FLOPS_CONVENTION = "fvcore: one fused multiply-add = 1 FLOP"


def count_flops(module: nn.Module, inputs: Any) -> tuple[int, dict[str, int]]:
    """fvcore FLOPs of ``module(*inputs)`` and the unsupported-op counts."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(module, inputs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    total = int(analysis.total())
    return total, dict(analysis.unsupported_ops())


class _Student(nn.Module):
    def __init__(self, rd: nn.Module) -> None:
        super().__init__()
        self.rd = rd

    def forward(self, *feats: torch.Tensor) -> list[torch.Tensor]:
        return self.rd.student(list(feats))


def _timed(fn, threads: int, min_run_time: float = 1.0) -> float:
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time).median


def measure_complexity(backbone: str, *, image_size: int, batch_size: int = 16, threads: int = 1,
                       device: str = "cpu", projection: str = PROJECTION_DEFAULT, student: str = STUDENT_DEFAULT,
                       student_output: str = STUDENT_OUTPUT_DEFAULT,
                       name: str | None = None, out: str | os.PathLike | None = None) -> dict[str, Any]:
    """FLOPs, parameters, latency and throughput of the RD network (``name``: the config's name)."""
    torch.manual_seed(0)
    torch.set_num_threads(max(1, threads))
    model = build_rd(backbone, "none", student=student, student_output=student_output,
                     projection=projection).eval()
    x = torch.randn(1, 3, image_size, image_size)
    with torch.no_grad():
        feats = model.teacher(x)
        f_teacher, u_teacher = count_flops(model.teacher, (x,))
        f_bottleneck, u_bottleneck = count_flops(model.bottleneck, (feats,))
        f_student, u_student = count_flops(_Student(model), tuple(feats))
    unsupported = Counter(u_teacher) + Counter(u_student)
    f_decoder = f_student - f_bottleneck
    params = {"teacher": count_params(model.teacher), "bottleneck": count_params(model.bottleneck),
              "decoder": count_params(model.decoder)}
    params["student"] = params["bottleneck"] + params["decoder"]
    params["total"] = params["teacher"] + params["student"]

    dev = torch.device(device)
    model = model.to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def infer(batch: torch.Tensor):
        def run() -> None:
            with torch.no_grad():
                model(batch)
            sync()
        return run

    one = torch.randn(1, 3, image_size, image_size, device=dev)
    many = torch.randn(batch_size, 3, image_size, image_size, device=dev)
    latency = _timed(infer(one), threads)
    batch_time = _timed(infer(many), threads)
    result = {
        "backbone": name or backbone, "model": backbone, "student": student,
        "student_family": model.spec.student.family,
        "student_output": model.spec.student.output,
        "image_size": image_size, "projection": model.spec.projection,
        "flops_counting": FLOPS_CONVENTION,
        "gflops": {"teacher": f_teacher / 1e9, "bottleneck": f_bottleneck / 1e9, "decoder": f_decoder / 1e9,
                   "student": f_student / 1e9, "total": (f_teacher + f_student) / 1e9},
        "params": params,
        "unsupported_ops": dict(sorted(unsupported.items())),
        "latency_ms_batch1": latency * 1e3,
        "throughput_img_s": batch_size / batch_time,
        "throughput_batch": batch_size,
        "threads": threads, "device": str(dev),
    }
    if out is not None:
        files.write_json(out, result)
    return result
