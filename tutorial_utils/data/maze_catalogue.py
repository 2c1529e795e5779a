"""The MC_Maze sessions: what NLB publishes on DANDI, where the files live here, what can go wrong.

Monkey Jenkins made delayed reaches through a maze while two 96-electrode Utah arrays recorded
dorsal premotor (PMd) and primary motor (M1) cortex. NLB publishes four sessions on DANDI:
``mc_maze`` (DANDI 000128, the full session), ``mc_maze_large`` (000138), ``mc_maze_medium``
(000139) and ``mc_maze_small`` (000140), each as a train file and a test file.

Files (``root`` is :func:`tutorial_utils.runtime.data_dir`, i.e. ``$TUTORIAL_DATA_DIR``)::

    root/mc_maze/<dandiset>/sub-Jenkins/*.nwb            real data, as laid out on DANDI
    root/synthetic/mc_maze/<dandiset>/sub-Jenkins/*.nwb  the stand-in (+ ground_truth.npz)
    .../<dandiset>/processed/<name>_<bin>ms_v<N>.npz      processed tensors (the cache)
"""
from __future__ import annotations

import os
from pathlib import Path

from ..runtime import data_dir as default_data_dir

SYNTHETIC_ENV = "TUTORIAL_SYNTHETIC_DATA"
SPLITS = ("train", "val", "test")
AREAS = ("PMd", "M1")

# name -> (dandiset id, session label in the DANDI file names)
SESSIONS = {
    "mc_maze": ("000128", "full"),
    "mc_maze_large": ("000138", "large"),
    "mc_maze_medium": ("000139", "medium"),
    "mc_maze_small": ("000140", "small"),
}


class MazeDataError(RuntimeError):
    """MC_Maze data could not be loaded: a file is corrupt, incomplete or lacks a table."""


class MazeDataUnavailable(MazeDataError):
    """The NWB files are not in the cache and DANDI cannot be reached."""


def check_name(name: str) -> str:
    if name not in SESSIONS:
        raise ValueError(f"unknown MC_Maze session {name!r}; expected one of {sorted(SESSIONS)}")
    return name


def dandi_paths(name: str) -> tuple[str, str]:
    """The (train, test) asset paths of session ``name`` inside its dandiset."""
    _, label = SESSIONS[check_name(name)]
    return (f"sub-Jenkins/sub-Jenkins_ses-{label}_desc-train_behavior+ecephys.nwb",
            f"sub-Jenkins/sub-Jenkins_ses-{label}_desc-test_ecephys.nwb")


def session_dir(name: str, *, synthetic: bool = False, data_dir: str | Path | None = None) -> Path:
    """The folder holding session ``name``'s NWB files and processed caches."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    dandiset, _ = SESSIONS[check_name(name)]
    return root / ("synthetic/mc_maze" if synthetic else "mc_maze") / dandiset


def use_synthetic(synthetic: bool | None = None) -> bool:
    """``synthetic`` if given, else whether ``$TUTORIAL_SYNTHETIC_DATA`` is set to 1/true/yes."""
    if synthetic is not None:
        return bool(synthetic)
    return os.environ.get(SYNTHETIC_ENV, "").strip().lower() in ("1", "true", "yes")
