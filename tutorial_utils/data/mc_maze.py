"""The NLB MC_Maze sessions as trial-aligned arrays: :func:`load_mc_maze` and :class:`MazeSession`.

:func:`load_mc_maze` returns a :class:`MazeSession`: trial-aligned arrays in NLB's window
(-250 ms to +450 ms around movement onset), binned at 5, 10 or 20 ms. The NWB files are read
with nlb_tools' ``NWBDataset`` (:mod:`.maze_nwb`), downloaded from DANDI when missing
(:mod:`.dandi`) and scored with nlb_tools (:mod:`.nlb`), so the numbers are the benchmark's own.
nlb_tools needs pandas 2.x: under pandas 3 its ``NWBDataset.resample`` writes into a read-only
array (hence ``pandas<3`` in pyproject.toml).

Offline: set ``TUTORIAL_SYNTHETIC_DATA=1`` (or pass ``synthetic=True``) to use a simulated
stand-in written as NWB files in the same layout (see :mod:`tutorial_utils.data.synthetic_maze`).
Without it, a missing file and no network raise :class:`MazeDataUnavailable` at once; the
loader never substitutes synthetic data on its own.

The cache. The first load processes the NWB files (seconds) and saves the arrays as
``<session folder>/processed/<name>_<bin>ms_v<N>.npz``; later loads read that (well under a
second). Processes share the cache safely: a file lock in the session folder lets one process
generate, download or process while the others wait, and every file is written under a unique
temporary name and renamed into place. A folder that cannot be written is not an error: the
arrays are processed, returned and not cached, with a warning.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import synthetic_maze
from .dandi import download_session, unavailable
from .maze_catalogue import (AREAS, SESSIONS, SPLITS, SYNTHETIC_ENV, MazeDataError, MazeDataUnavailable,
                             check_name, dandi_paths, session_dir, use_synthetic)
from .maze_nwb import REQUIRED_TEST, REQUIRED_TRAIN, check_nwb, process_session, unit_areas

BIN_WIDTHS_MS = (5, 10, 20)
CACHE_VERSION = 2  # bump when the processed arrays change meaning (2: unit ids, explicit trial windows)
LOCK_TIMEOUT_S = 1800  # a process holding the lock may be downloading the full session

__all__ = ["AREAS", "BIN_WIDTHS_MS", "CACHE_VERSION", "REQUIRED_TEST", "REQUIRED_TRAIN", "SESSIONS", "SPLITS",
           "SYNTHETIC_ENV", "MazeDataError", "MazeDataUnavailable", "MazeSession", "check_nwb", "dandi_paths",
           "download_session", "load_mc_maze", "process_session", "session_dir", "unit_areas", "use_synthetic"]


@dataclass(repr=False)
class MazeSession:
    """One MC_Maze session as trial-aligned arrays (train and val trials, plus test if asked).

    Shapes: B trials, T bins of ``bin_ms`` over [-250, +450) ms around movement onset,
    F = 200 ms / bin_ms forward-prediction bins after the window, N_in / N_out units.

    heldin_spikes  (B, T, N_in)  float32 spike counts
    heldout_spikes (B, T, N_out) float32 counts; NaN on test trials (NLB withholds them)
    heldin_forward, heldout_forward (B, F, N) counts just after the window; NaN where withheld
        (all of a test trial's) or not recorded
    hand_vel (B, T, 2) mm/s and hand_pos (B, T, 2) mm, unlagged (same bins as the spikes);
        NaN on test trials
    condition (B,) int: index of (trial_type, trial_version) in this session; -1 on test trials
    split (B,) str in {'train', 'val', 'test'}; trial_id (B,) int, as in the NWB trials table
    heldin_area (N_in,), heldout_area (N_out,) str in {'PMd', 'M1'}
    heldin_unit_id (N_in,), heldout_unit_id (N_out,) int: the NWB unit ids (1xxx PMd, 2xxx M1)
    time_ms (T,) start of each bin relative to movement onset
    """

    name: str
    bin_ms: int
    is_synthetic: bool
    heldin_spikes: np.ndarray
    heldout_spikes: np.ndarray
    heldin_forward: np.ndarray
    heldout_forward: np.ndarray
    hand_vel: np.ndarray
    hand_pos: np.ndarray
    condition: np.ndarray
    split: np.ndarray
    trial_id: np.ndarray
    heldin_area: np.ndarray
    heldout_area: np.ndarray
    heldin_unit_id: np.ndarray
    heldout_unit_id: np.ndarray
    time_ms: np.ndarray
    folder: Path
    eval_target: dict = field(default_factory=dict)  # nlb_tools' targets for train -> val scoring

    def trials(self, split: str) -> np.ndarray:
        """Indices (into the first axis) of the trials in ``split`` ('train', 'val' or 'test')."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.flatnonzero(self.split == split)

    def all_spikes(self, split: str | None = None) -> np.ndarray:
        """Held-in then held-out units, (B, T, N_in + N_out): the order models predict them in.

        With ``split``, only that split's trials."""
        spikes = np.concatenate([self.heldin_spikes, self.heldout_spikes], axis=2)
        return spikes if split is None else spikes[self.trials(split)]

    @property
    def all_areas(self) -> np.ndarray:
        """The area of every unit, held-in then held-out, (N_in + N_out,)."""
        return np.concatenate([self.heldin_area, self.heldout_area])

    @property
    def label(self) -> str:
        """The session's name, marked SYNTHETIC STAND-IN when it is simulated."""
        return f"{self.name} [{synthetic_maze.SYNTHETIC_LABEL}]" if self.is_synthetic else self.name

    def describe(self) -> str:
        counts = ", ".join(f"{(self.split == s).sum()} {s}" for s in SPLITS if (self.split == s).any())
        areas = lambda a: ", ".join(f"{(a == x).sum()} {x}" for x in AREAS)  # noqa: E731
        text = (f"{self.label}: {len(self.split)} trials ({counts}), {len(self.time_ms)} bins of "
                f"{self.bin_ms} ms from {self.time_ms[0]} ms around movement onset; "
                f"{self.heldin_spikes.shape[2]} held-in units ({areas(self.heldin_area)}), "
                f"{self.heldout_spikes.shape[2]} held-out units ({areas(self.heldout_area)})")
        if self.is_synthetic:
            text += ("\n  SYNTHETIC STAND-IN: simulated data in the MC_Maze layout, not monkey "
                     f"recordings (unset {SYNTHETIC_ENV} and download the real files for those)")
        return text

    __repr__ = describe


# ---------------------------------------------------------------- loading

def load_mc_maze(name: str = "mc_maze_small", bin_ms: int = 5, *, data_dir: str | Path | None = None,
                 synthetic: bool | None = None, include_test: bool = False,
                 download: bool = True) -> MazeSession:
    """Load an MC_Maze session as a :class:`MazeSession` (see there for shapes).

    ``synthetic=None`` follows ``$TUTORIAL_SYNTHETIC_DATA``. ``include_test`` appends NLB's
    test trials (held-in spikes only). The first load reads the NWB files through nlb_tools
    and caches the tensors; later loads read the cache (well under a second).
    """
    name, bin_ms = check_name(name), check_bin_ms(bin_ms)
    synthetic = use_synthetic(synthetic)
    folder = session_dir(name, synthetic=synthetic, data_dir=data_dir)
    writable = _is_writable(folder)
    with _cache_lock(folder, writable):
        train_file, test_file = _session_files(name, synthetic, folder, data_dir, download, writable)
        if include_test and test_file is None:
            raise MazeDataError(f"include_test=True but the test file {dandi_paths(name)[1]} is not in "
                                f"{train_file.parent}; run download_session({name!r})")
        cache = folder / "processed" / f"{name}_{bin_ms}ms_v{CACHE_VERSION}.npz"
        stamp = _fingerprint([train_file, test_file])
        arrays = _read_cache(cache, stamp)
        if arrays is None:
            if not writable:
                warnings.warn(f"{folder} cannot be written: processing {name} without caching it (every "
                              "load will take this long). Point $TUTORIAL_DATA_DIR at a writable folder "
                              "to cache it.", stacklevel=2)
            arrays = process_session(name, bin_ms, train_file, test_file)
            arrays["fingerprint"] = np.array(stamp)
            if writable:
                _write_atomic(cache, arrays)
    return _to_session(name, bin_ms, synthetic, arrays, folder, include_test)


def check_bin_ms(bin_ms) -> int:
    """``bin_ms`` as an int (5.0 -> 5), or ValueError unless it is one of :data:`BIN_WIDTHS_MS`."""
    is_number = isinstance(bin_ms, (int, float, np.integer, np.floating)) and not isinstance(bin_ms, (bool, np.bool_))
    if not is_number or not np.isfinite(bin_ms) or float(bin_ms) not in BIN_WIDTHS_MS:
        raise ValueError(f"bin_ms must be one of {BIN_WIDTHS_MS} (milliseconds), got {bin_ms!r}")
    return int(bin_ms)


def _session_files(name, synthetic, folder, data_dir, download, writable) -> tuple[Path, Path | None]:
    """(train file, test file or None), generating or downloading what is missing."""
    train, test = (folder / path for path in dandi_paths(name))
    if synthetic:
        if not (train.exists() and test.exists() and _synthetic_is_current(folder)):
            if not writable:
                raise MazeDataError(f"the synthetic stand-in of {name} must be generated in {folder}, which "
                                    "cannot be written: point $TUTORIAL_DATA_DIR at a writable folder")
            synthetic_maze.generate_session(name, folder, *dandi_paths(name))
        return train, test
    if not train.exists():
        if not download:
            raise unavailable(name, train, FileNotFoundError("download=False"))
        download_session(name, data_dir)
    return train, (test if test.exists() else None)


def _synthetic_is_current(folder: Path) -> bool:
    """Whether the stand-in in ``folder`` was written by this generator version (and is readable)."""
    if not (folder / "ground_truth.npz").exists():
        return False
    try:
        return int(synthetic_maze.load_ground_truth(folder)["version"]) == synthetic_maze.GENERATOR_VERSION
    except Exception as error:  # a damaged stand-in is regenerated (it is deterministic), and said so
        print(f"note: regenerating the synthetic stand-in in {folder} ({error})")
        return False


def _is_writable(folder: Path) -> bool:
    """Can files be created in ``folder`` (made if missing)? Asked before any slow work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _cache_lock(folder: Path, writable: bool):
    """An inter-process lock on ``folder``: one process fills the cache, the others wait for it."""
    if not writable:
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(str(folder / ".cache.lock"), timeout=LOCK_TIMEOUT_S)


def _fingerprint(files) -> str:
    """Changes whenever a source file is replaced (size and modification time)."""
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f is not None)


def _read_cache(path: Path, stamp: str) -> dict | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except Exception:  # a damaged cache is rebuilt, never trusted
        return None
    return arrays if str(arrays.get("fingerprint")) == stamp else None


def _write_atomic(path: Path, arrays: dict) -> None:
    """Save ``arrays`` as .npz under a unique temporary name, then rename (never a half-written
    cache). A failure to write (disk full, folder turned read-only) only warns."""
    partial = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".partial")
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(partial, path)
        partial = None
    except OSError as error:
        warnings.warn(f"could not write the cache {path} ({error}); the arrays are used without caching",
                      stacklevel=3)
    finally:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)


def _to_session(name, bin_ms, synthetic, arrays, folder, include_test) -> MazeSession:
    keep = slice(None) if include_test else arrays["split"] != "test"
    per_trial = ("heldin_spikes", "heldout_spikes", "heldin_forward", "heldout_forward", "hand_vel",
                 "hand_pos", "condition", "split", "trial_id")
    per_unit = ("heldin_area", "heldout_area", "heldin_unit_id", "heldout_unit_id")
    return MazeSession(
        name=name, bin_ms=bin_ms, is_synthetic=synthetic,
        **{key: arrays[key][keep] for key in per_trial}, **{key: arrays[key] for key in per_unit},
        time_ms=arrays["time_ms"], folder=Path(folder),
        eval_target={key[len("eval/"):]: arrays[key] for key in arrays if key.startswith("eval/")},
    )
