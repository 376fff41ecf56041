"""Shared fixtures: paths of the real sample files shipped in ``data/samples``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

# Figures in tests are written to files: never pick a GUI backend because a display exists
# (pytest runs under Xvfb for the napari tests). matplotlib.use, not the MPLBACKEND variable:
# notebook kernels started by the tests inherit the environment and must keep their inline
# backend, or their figures vanish from the outputs.
matplotlib.use("Agg")

import pytest

from deeptree.io import SAMPLES_DIR


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    assert SAMPLES_DIR.is_dir(), f"missing {SAMPLES_DIR}: the repository ships data/samples"
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def atm001_path(samples_dir) -> Path:
    return samples_dir / "atm_001" / "airway.nii.gz"


@pytest.fixture(scope="session")
def cip_ct64_dir(samples_dir) -> Path:
    return samples_dir / "cip_ct64"


@pytest.fixture(scope="session")
def totalseg_ct_path(samples_dir) -> Path:
    return samples_dir / "totalseg_chest" / "ct.nii.gz"


@pytest.fixture
def deterministic():
    """torch's deterministic algorithms on for one test (bitwise comparisons), restored after."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)
