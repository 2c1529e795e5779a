"""Where the course runs: device, seeding, run profiles and the data cache.

Two profiles size every experiment in the course:

* ``quick`` — small data and short training, so a notebook finishes in a few minutes on a
  2-core laptop CPU (and in CI).
* ``full`` — the sizes that give the numbers quoted in the text; minutes on a Colab T4.

``TUTORIAL_PROFILE=quick|full`` picks one; otherwise ``full`` on CUDA and ``quick`` on CPU.
"""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

PROFILE_ENV = "TUTORIAL_PROFILE"
DATA_DIR_ENV = "TUTORIAL_DATA_DIR"


@dataclass(frozen=True)
class Profile:
    """Every size knob of the course in one place (read by the notebooks and the benchmark)."""

    name: str
    # Notebook 1: NDT1 on Lorenz
    lorenz_trials: int
    ndt1_epochs: int
    ndt1_patience: int
    batch_size: int
    # Notebook 2: stitching
    stitch_epochs: int
    stitch_batch_size: int  # small: mc_maze_small has only 75 training trials
    # Notebook 3: decoding
    decoder_epochs: int  # end-to-end causal decoder
    wiener_history_bins: tuple[int, ...]  # Wiener filter lengths k tried (bins of spike history)


PROFILES = {
    "quick": Profile(
        name="quick", lorenz_trials=600, ndt1_epochs=70, ndt1_patience=20, batch_size=32,
        stitch_epochs=80, stitch_batch_size=8, decoder_epochs=30, wiener_history_bins=(1, 2, 4, 8, 16),
    ),
    "full": Profile(
        name="full", lorenz_trials=2000, ndt1_epochs=300, ndt1_patience=50, batch_size=64,
        stitch_epochs=400, stitch_batch_size=16, decoder_epochs=150, wiener_history_bins=(1, 2, 4, 8, 16, 32),
    ),
}


def get_device() -> torch.device:
    """CUDA when a GPU is attached, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The run profile: ``name``, else ``$TUTORIAL_PROFILE``, else ``full`` on CUDA / ``quick`` on CPU.

    Keyword overrides replace single fields, e.g. ``get_profile("quick", ndt1_epochs=5)``.
    """
    name = name or os.environ.get(PROFILE_ENV) or ("full" if torch.cuda.is_available() else "quick")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: expected one of {sorted(PROFILES)} "
                         f"(set {PROFILE_ENV} or pass profile=...)")
    return replace(PROFILES[name], **overrides)


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for explicit use (e.g. masking)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def in_colab() -> bool:
    return "google.colab" in sys.modules


def data_dir() -> Path:
    """The download/processing cache: ``$TUTORIAL_DATA_DIR``, else ``data/`` at the repository
    root (source checkout or editable install), else ``./data``."""
    if os.environ.get(DATA_DIR_ENV):
        path = Path(os.environ[DATA_DIR_ENV]).expanduser()
    else:
        repo_root = Path(__file__).resolve().parents[1]
        path = repo_root / "data" if (repo_root / "pyproject.toml").exists() else Path.cwd() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def describe_runtime(profile: Profile | None = None) -> str:
    """One line for the top of each notebook: device, profile, and a hint when no GPU is attached."""
    profile = profile or get_profile()
    device = get_device()
    if device.type == "cuda":
        where = f"GPU: {torch.cuda.get_device_name(0)}"
    else:
        where = "CPU only (no GPU attached)"
        if in_colab():
            where += " - for the full profile use Runtime > Change runtime type > T4 GPU"
    return f"{where} | profile: {profile.name} (set {PROFILE_ENV}=quick|full to change) | torch {torch.__version__}"
