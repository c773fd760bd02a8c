"""A stand-in ``rd`` package for workflow plumbing tests: it parses argv with the real rd/cli.py
parser and writes small fake outputs, so a Snakemake run takes seconds and trains nothing."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _png(width: int = 4, height: int = 4, value: int = 128) -> bytes:
    """A valid 8-bit grey PNG (no image library needed)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes([value]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


TINY_PNG = _png()


STUB_MAIN = textwrap.dedent('''
    """Stand-in for `python -m rd`: parses argv with the real rd/cli.py parser, writes fake outputs."""
    import csv, json, os, sys
    from pathlib import Path
    from rd.cli import build_parser

    PNG = bytes.fromhex("%s")

    def dump(path, obj):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(obj))

    a = build_parser().parse_args()
    c = a.command
    if c == "prepare-data":
        if a.dataset == "textures":
            img = Path(a.root) / a.category / "train" / "good" / "000.png"
            img.parent.mkdir(parents=True, exist_ok=True)
            img.write_bytes(PNG)
            (Path(a.root) / a.category / "generated.done").write_text("{}")  # the generator's last file
        dump(a.out, {"dataset": a.dataset, "root": a.root, "category": a.category, "n_train": 1})
    elif c == "smoke":
        dump(a.out, {"backbone": a.backbone, "ok": True, "sizes": a.image_sizes})
    elif c == "complexity":
        dump(a.out, {"backbone": a.backbone, "image_size": a.image_size, "threads": a.threads})
    elif c == "train":
        out = Path(a.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.pt").write_bytes(b"fake")
        (out / "history.csv").write_text("epoch,loss,lr,seconds,elapsed\\n1,0.5,0.1,1,1\\n")
        dump(out / "train.json", {"category": a.category, "backbone": a.backbone, "setting": a.setting_name,
                                  "seed": a.seed, "setting_params": a.setting, "epochs": a.epochs,
                                  "image_size": a.image_size, "threads": a.threads, "device": a.device})
    elif c == "evaluate":
        out = Path(a.out_dir)
        assert (Path(a.model)).is_file()
        dump(out / "metrics.json", {"image_auroc": 0.75, "pixel_auroc": 0.8, "aupro": 0.5})
        (out / "scores.csv").write_text("path,defect_type,label,score\\n")
        dump(out / "curves.json", {})
        (out / "failure_cases.npz").write_bytes(b"fake")
        dump(out / "threshold.json", {"value": 0.5})
    elif c == "aggregate":
        assert all(Path(b).is_file() for b in a.benchmarks), a.benchmarks
        with open(a.out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["run_dir", "image_auroc"])
            for r in a.runs:
                w.writerow([r, json.loads((Path(r) / "metrics.json").read_text())["image_auroc"]])
    elif c == "stats":
        Path(a.out).write_text("comparison,arm_a,arm_b\\n" + "".join(f"c,{x},{y}\\n" for x, y in a.comparison))
    elif c == "report":
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text("<html><body>fake report</body></html>")
        os.makedirs(a.figures_dir, exist_ok=True)
        Path(a.figures_dir, "metrics.png").write_bytes(PNG)
        os.makedirs(a.tables_dir, exist_ok=True)
        Path(a.tables_dir, "results.md").write_text("| arm |")
    print("stub", c, "ok")
''') % TINY_PNG.hex()


def install_stub_rd(wd: Path) -> None:
    pkg = wd / "rd"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    # the real command line and config check (and the light modules they import)
    for name in ("cli.py", "errors.py", "params.py", "files.py", "config_check.py", "commands.py", "metric_list.py"):
        shutil.copy2(REPO / "rd" / name, pkg / name)
    (pkg / "__main__.py").write_text(STUB_MAIN)
