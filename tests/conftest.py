"""Shared fixtures: one generated texture category per session, one torch thread per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _single_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def brick_root(tmp_path_factory) -> Path:
    """Dataset root holding the embedded ``brick`` category (seed 0)."""
    from rd.data import prepare_category

    root = tmp_path_factory.mktemp("textures")
    prepare_category("textures", root, "brick", seed=0)
    return root
