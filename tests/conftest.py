"""Test-wide settings: the quick profile, one thread per process (CI has 2 cores, pytest-xdist uses both)."""
import os

os.environ.setdefault("TUTORIAL_PROFILE", "quick")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
