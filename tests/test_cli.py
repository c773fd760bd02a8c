"""CLI plumbing: command list, one-line errors, CUDA out-of-memory as a user error."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rd import cli


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "rd", "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("prepare-data", "smoke", "train", "evaluate", "complexity", "aggregate", "stats", "report"):
        assert name in out


def _raising(exc):
    def handler(args):
        raise exc
    return handler


def test_cuda_out_of_memory_is_one_line(monkeypatch, capsys):
    name, (help_text, add, _) = "smoke", cli.COMMANDS["smoke"]
    monkeypatch.setitem(cli.COMMANDS, name, (help_text, add, _raising(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))))
    assert cli.main(["smoke", "--backbone", "resnet18", "--out", "x.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: The GPU ran out of memory") and "batch_size" in err[0]


def test_other_runtime_errors_are_bugs_with_traceback(monkeypatch):
    name, (help_text, add, _) = "smoke", cli.COMMANDS["smoke"]
    monkeypatch.setitem(cli.COMMANDS, name, (help_text, add, _raising(RuntimeError("shape bug"))))
    with pytest.raises(RuntimeError, match="shape bug"):
        cli.main(["smoke", "--backbone", "resnet18", "--out", "x.json"])
