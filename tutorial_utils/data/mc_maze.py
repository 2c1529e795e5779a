"""The Neural Latents Benchmark MC_Maze sessions: download, load, cache and score.

Monkey Jenkins made delayed reaches through a maze while two 96-electrode Utah arrays recorded
dorsal premotor (PMd) and primary motor (M1) cortex. NLB publishes four sessions on DANDI:

* ``mc_maze`` (DANDI 000128, the full session), ``mc_maze_large`` (000138),
  ``mc_maze_medium`` (000139) and ``mc_maze_small`` (000140).

:func:`load_mc_maze` returns a :class:`MazeSession`: trial-aligned tensors in NLB's window
(-250 ms to +450 ms around movement onset), binned at 5, 10 or 20 ms. The files are read with
``nlb_tools.nwb_interface.NWBDataset`` and scored with ``nlb_tools.evaluation.evaluate``, so the
numbers are the benchmark's own. nlb_tools needs pandas 2.x: under pandas 3 its
``NWBDataset.resample`` writes into a read-only array (hence ``pandas<3`` in pyproject.toml).

Brain area of a unit: in the DANDI files each row of the ``units`` table points (column
``electrodes``) at one row of the electrodes table, whose ``group_name`` is
``electrode_group_M1`` or ``electrode_group_PMd`` (and ``location`` is ``M1`` / ``PMd``);
the unit ids themselves carry no area information.

Offline: set ``TUTORIAL_SYNTHETIC_DATA=1`` (or pass ``synthetic=True``) to use a simulated
stand-in written as NWB files in the same layout (see :mod:`tutorial_utils.data.synthetic_maze`).
Without it, a missing file and no network raise :class:`MazeDataUnavailable` at once; the
loader never substitutes synthetic data on its own.

Files (``root`` is :func:`tutorial_utils.runtime.data_dir`, i.e. ``$TUTORIAL_DATA_DIR``)::

    root/mc_maze/<dandiset>/sub-Jenkins/*.nwb            real data, as laid out on DANDI
    root/synthetic/mc_maze/<dandiset>/sub-Jenkins/*.nwb  the stand-in (+ ground_truth.npz)
    .../<dandiset>/processed/<name>_<bin>ms_v<N>.npz      processed tensors (the cache)
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..runtime import data_dir as default_data_dir
from . import synthetic_maze

SYNTHETIC_ENV = "TUTORIAL_SYNTHETIC_DATA"
DANDI_API_URL = "https://api.dandiarchive.org/api"
BIN_WIDTHS_MS = (5, 10, 20)
CACHE_VERSION = 1  # bump when the processed arrays change meaning
SPLITS = ("train", "val", "test")
AREAS = ("PMd", "M1")

# name -> (dandiset id, session label in the DANDI file names)
SESSIONS = {
    "mc_maze": ("000128", "full"),
    "mc_maze_large": ("000138", "large"),
    "mc_maze_medium": ("000139", "medium"),
    "mc_maze_small": ("000140", "small"),
}

# What the loader needs from each file, as HDF5 paths (checked before nlb_tools opens it).
REQUIRED_TRAIN = (
    "intervals/trials/start_time", "intervals/trials/stop_time", "intervals/trials/move_onset_time",
    "intervals/trials/split", "intervals/trials/trial_type", "intervals/trials/trial_version",
    "units/spike_times", "units/obs_intervals", "units/heldout", "units/electrodes",
    "general/extracellular_ephys/electrodes/group_name",
    "processing/behavior/hand_pos", "processing/behavior/hand_vel",
)
REQUIRED_TEST = (
    "intervals/trials/start_time", "intervals/trials/stop_time", "intervals/trials/move_onset_time",
    "intervals/trials/split", "units/spike_times", "units/obs_intervals", "units/heldout",
)


class MazeDataError(RuntimeError):
    """MC_Maze data could not be loaded: a file is corrupt, incomplete or lacks a table."""


class MazeDataUnavailable(MazeDataError):
    """The NWB files are not in the cache and DANDI cannot be reached."""


# ---------------------------------------------------------------- where files live

def dandi_paths(name: str) -> tuple[str, str]:
    """The (train, test) asset paths of session ``name`` inside its dandiset."""
    _, label = SESSIONS[_check_name(name)]
    return (f"sub-Jenkins/sub-Jenkins_ses-{label}_desc-train_behavior+ecephys.nwb",
            f"sub-Jenkins/sub-Jenkins_ses-{label}_desc-test_ecephys.nwb")


def session_dir(name: str, *, synthetic: bool = False, data_dir: str | Path | None = None) -> Path:
    """The folder holding session ``name``'s NWB files and processed caches."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    dandiset, _ = SESSIONS[_check_name(name)]
    return root / ("synthetic/mc_maze" if synthetic else "mc_maze") / dandiset


def _check_name(name: str) -> str:
    if name not in SESSIONS:
        raise ValueError(f"unknown MC_Maze session {name!r}; expected one of {sorted(SESSIONS)}")
    return name


def use_synthetic(synthetic: bool | None = None) -> bool:
    """``synthetic`` if given, else whether ``$TUTORIAL_SYNTHETIC_DATA`` is set to 1/true/yes."""
    if synthetic is not None:
        return bool(synthetic)
    return os.environ.get(SYNTHETIC_ENV, "").strip().lower() in ("1", "true", "yes")


# ---------------------------------------------------------------- download

def _dandi_client(timeout_s: float = 10.0):
    """A DANDI API client, after one quick request proves the archive is reachable.

    dandi's own client retries a failed connection for about a minute; the check turns
    "no network" into an immediate error instead.
    """
    import requests
    from dandi.dandiapi import DandiAPIClient

    requests.get(f"{DANDI_API_URL}/info/", timeout=timeout_s).raise_for_status()
    return DandiAPIClient(api_url=DANDI_API_URL)


def _unavailable(name: str, missing: Path, error: Exception) -> MazeDataUnavailable:
    dandiset, _ = SESSIONS[name]
    return MazeDataUnavailable(
        f"Cannot load {name}: {missing.name} (DANDI:{dandiset}) is not in the cache and DANDI "
        f"could not be reached ({type(error).__name__}: {str(error)[:200]}).\n"
        f"  Looked for: {missing}\n"
        f"  To continue, either\n"
        f"   - download it where there is network (tutorial_utils.data.mc_maze.download_session"
        f"({name!r}), or `dandi download DANDI:{dandiset}`) and copy the sub-Jenkins/ folder "
        f"into {missing.parent.parent}, or\n"
        f"   - set {SYNTHETIC_ENV}=1 to use the synthetic stand-in (simulated data, clearly "
        f"labelled as such)."
    )


def download_session(name: str, data_dir: str | Path | None = None, *, include_test: bool = True,
                     timeout_s: float = 10.0, retries: int = 3) -> list[Path]:
    """Download session ``name``'s NWB files from DANDI into the cache; return their paths.

    Files already there (complete: partial downloads carry a ``.part`` suffix) are skipped.
    Each file streams into ``<file>.part`` with a progress bar, resumes from where a previous
    attempt stopped, and is renamed into place only once its size matches DANDI's.
    Raises :class:`MazeDataUnavailable` quickly when DANDI cannot be reached.
    """
    import requests

    name = _check_name(name)
    folder = session_dir(name, data_dir=data_dir)
    wanted = dandi_paths(name)[: 2 if include_test else 1]
    targets = [folder / path for path in wanted]
    if all(target.exists() for target in targets):
        return targets
    dandiset_id, _ = SESSIONS[name]
    try:
        client = _dandi_client(timeout_s)
        dandiset = client.get_dandiset(dandiset_id)
        assets = [asset for asset in dandiset.get_assets() if asset.path in wanted]
    except (requests.RequestException, OSError) as error:
        raise _unavailable(name, targets[0], error) from error
    if len(assets) != len(wanted):
        found = sorted(asset.path for asset in assets)
        raise MazeDataError(f"DANDI:{dandiset_id} does not hold the expected files {list(wanted)} "
                            f"(found {found}); the dandiset layout may have changed")
    for asset in assets:
        target = folder / asset.path
        if not target.exists():
            _download_asset(asset, target, retries)
    return targets


def _download_asset(asset, target: Path, retries: int) -> None:
    """Stream one asset to ``target.part`` (resuming), then rename it to ``target``."""
    import requests
    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    print(f"Downloading {asset.path} ({asset.size / 1e6:.1f} MB) to {target}")
    for attempt in range(1, retries + 1):
        done = partial.stat().st_size if partial.exists() else 0
        if done > asset.size:  # a server that ignored the Range header; start again
            partial.unlink()
            done = 0
        try:
            with open(partial, "ab") as out, tqdm(total=asset.size, initial=done, unit="B",
                                                  unit_scale=True, desc=target.name) as bar:
                for chunk in asset.get_download_file_iter()(done):
                    out.write(chunk)
                    bar.update(len(chunk))
        except (requests.RequestException, OSError) as error:
            if attempt == retries:
                raise MazeDataError(f"downloading {asset.path} failed after {retries} attempts "
                                    f"({error}); run again to resume from {partial}") from error
            time.sleep(2 * attempt)
            continue
        if partial.stat().st_size == asset.size:
            os.replace(partial, target)
            return
        partial.unlink()  # wrong size: never keep a file we cannot trust
    raise MazeDataError(f"downloading {asset.path}: size never matched DANDI's {asset.size} bytes")


def _session_files(name: str, synthetic: bool, data_dir, download: bool) -> tuple[Path, Path | None]:
    """(train file, test file or None), generating or downloading what is missing."""
    folder = session_dir(name, synthetic=synthetic, data_dir=data_dir)
    train, test = (folder / path for path in dandi_paths(name))
    if synthetic:
        if not (train.exists() and test.exists() and _synthetic_is_current(folder)):
            synthetic_maze.generate_session(name, folder, *dandi_paths(name))
        return train, test
    if not train.exists():
        if not download:
            raise _unavailable(name, train, FileNotFoundError("download=False"))
        download_session(name, data_dir)
    return train, (test if test.exists() else None)


def _synthetic_is_current(folder: Path) -> bool:
    try:
        return int(synthetic_maze.load_ground_truth(folder)["version"]) == synthetic_maze.GENERATOR_VERSION
    except (OSError, KeyError, ValueError):
        return False


# ---------------------------------------------------------------- the session object

@dataclass(repr=False)
class MazeSession:
    """One MC_Maze session as trial-aligned arrays (train and val trials, plus test if asked).

    Shapes: B trials, T bins of ``bin_ms`` over [-250, +450) ms around movement onset,
    F = 200 ms / bin_ms forward-prediction bins after the window, N_in / N_out units.

    heldin_spikes  (B, T, N_in)  float32 spike counts
    heldout_spikes (B, T, N_out) float32 counts; NaN on test trials (NLB withholds them)
    heldin_forward, heldout_forward (B, F, N) counts just after the window (NaN where withheld)
    hand_vel (B, T, 2) mm/s and hand_pos (B, T, 2) mm, unlagged (same bins as the spikes);
        NaN on test trials
    condition (B,) int: index of (trial_type, trial_version) in this session; -1 on test trials
    split (B,) str in {'train', 'val', 'test'}; trial_id (B,) int, as in the NWB trials table
    heldin_area (N_in,), heldout_area (N_out,) str in {'PMd', 'M1'}
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
    name = _check_name(name)
    if bin_ms not in BIN_WIDTHS_MS:
        raise ValueError(f"bin_ms must be one of {BIN_WIDTHS_MS}, got {bin_ms!r}")
    synthetic = use_synthetic(synthetic)
    train_file, test_file = _session_files(name, synthetic, data_dir, download)
    if include_test and test_file is None:
        raise MazeDataError(f"include_test=True but the test file {dandi_paths(name)[1]} is not in "
                            f"{train_file.parent}; run download_session({name!r})")
    cache = train_file.parent.parent / "processed" / f"{name}_{bin_ms}ms_v{CACHE_VERSION}.npz"
    stamp = _fingerprint([train_file, test_file])
    arrays = _read_cache(cache, stamp)
    if arrays is None:
        arrays = process_session(name, bin_ms, train_file, test_file)
        arrays["fingerprint"] = np.array(stamp)
        _write_atomic(cache, arrays)
    return _to_session(name, bin_ms, synthetic, arrays, train_file.parent.parent, include_test)


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
    """Save ``arrays`` as .npz under a temporary name, then rename (never a half-written cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + f".partial-{os.getpid()}.npz")
    try:
        np.savez(partial, **arrays)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _to_session(name, bin_ms, synthetic, arrays, folder, include_test) -> MazeSession:
    keep = slice(None) if include_test else arrays["split"] != "test"
    per_trial = ("heldin_spikes", "heldout_spikes", "heldin_forward", "heldout_forward", "hand_vel",
                 "hand_pos", "condition", "split", "trial_id")
    return MazeSession(
        name=name, bin_ms=bin_ms, is_synthetic=synthetic,
        **{key: arrays[key][keep] for key in per_trial},
        heldin_area=arrays["heldin_area"], heldout_area=arrays["heldout_area"],
        time_ms=arrays["time_ms"], folder=Path(folder),
        eval_target={key[len("eval/"):]: arrays[key] for key in arrays if key.startswith("eval/")},
    )


# ---------------------------------------------------------------- NWB -> arrays (via nlb_tools)

def check_nwb(path: Path, required: tuple[str, ...]) -> None:
    """Raise :class:`MazeDataError` naming ``path`` if it is unreadable or lacks a required item."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [item for item in required if item not in f]
    except OSError as error:
        raise MazeDataError(f"{path} cannot be read as an NWB/HDF5 file ({error}). It is probably "
                            "truncated or corrupt: delete it and download it again.") from None
    if missing:
        raise MazeDataError(f"{path} is missing {', '.join(missing)} (needed to build the MC_Maze "
                            "tensors); the file is incomplete or not an NLB MC_Maze file.")


def _read_dataset(path: Path, bin_ms: int):
    """``NWBDataset`` for ``path`` resampled to ``bin_ms``, with errors that name the file."""
    from nlb_tools.nwb_interface import NWBDataset

    try:
        dataset = NWBDataset(str(path))
    except Exception as error:
        raise MazeDataError(f"nlb_tools could not read {path}: {type(error).__name__}: {error}") from error
    dataset.resample(bin_ms)
    return dataset


def unit_areas(path: Path) -> dict[int, str]:
    """Map unit id -> 'PMd' or 'M1', via each unit's electrode's group name in ``path``."""
    import h5py

    with h5py.File(path, "r") as f:
        ids = f["units/id"][()]
        electrode_rows = f["units/electrodes"][()]
        ends = f["units/electrodes_index"][()]
        groups = [g.decode() if isinstance(g, bytes) else str(g)
                  for g in f["general/extracellular_ephys/electrodes/group_name"][()]]
    areas = {}
    for unit, first_row in zip(ids, np.concatenate([[0], ends[:-1]])):
        group = groups[electrode_rows[first_row]]
        area = "PMd" if "PMd" in group else "M1" if "M1" in group else None
        if area is None:
            raise MazeDataError(f"{path}: electrode group {group!r} of unit {unit} names neither PMd nor M1")
        areas[int(unit)] = area
    return areas


def process_session(name: str, bin_ms: int, train_file: Path, test_file: Path | None) -> dict:
    """Build every array of a :class:`MazeSession` (all splits) plus nlb_tools' eval targets."""
    from nlb_tools.make_tensors import PARAMS, make_eval_target_tensors, make_stacked_array

    check_nwb(train_file, REQUIRED_TRAIN)
    if test_file is not None:
        check_nwb(test_file, REQUIRED_TEST)
    params = PARAMS[name]
    window = dict(params["make_params"], allow_nans=True)
    start_ms, stop_ms = window["align_range"]
    forward = dict(window, align_range=(stop_ms, stop_ms + params["fp_len"]))

    dataset = _read_dataset(train_file, bin_ms)
    info = dataset.trial_info
    trainval = info["split"].isin(["train", "val"]).to_numpy()
    main = make_stacked_array(dataset, ["spikes", "heldout_spikes", "hand_vel", "hand_pos"], window, trainval)
    ahead = make_stacked_array(dataset, ["spikes", "heldout_spikes"], forward, trainval)
    chosen = info[trainval]
    pairs = list(zip(chosen["trial_type"], chosen["trial_version"]))
    condition = np.unique(pairs, axis=0, return_inverse=True)[1].reshape(-1)
    areas = unit_areas(train_file)
    arrays = {
        "heldin_spikes": main["spikes"], "heldout_spikes": main["heldout_spikes"],
        "heldin_forward": ahead["spikes"], "heldout_forward": ahead["heldout_spikes"],
        "hand_vel": main["hand_vel"], "hand_pos": main["hand_pos"],
        "condition": condition, "split": chosen["split"].to_numpy(str), "trial_id": chosen["trial_id"].to_numpy(),
        "heldin_area": np.array([areas[u] for u in dataset.data["spikes"].columns]),
        "heldout_area": np.array([areas[u] for u in dataset.data["heldout_spikes"].columns]),
        "time_ms": np.arange(start_ms, stop_ms, bin_ms),
    }
    target = make_eval_target_tensors(dataset, name, "train", "val", save_file=False, include_psth=True)
    for key, value in next(iter(target.values())).items():
        if value.dtype == object:  # eval_cond_idx: one index array per condition, stored flat
            arrays[f"eval/{key}/flat"] = np.concatenate(list(value)).astype(np.int64)
            arrays[f"eval/{key}/lengths"] = np.array([len(v) for v in value])
        else:
            arrays[f"eval/{key}"] = value
    if test_file is not None:
        arrays = _append_test_trials(arrays, _read_dataset(test_file, bin_ms), window, forward)
    for key in ("heldin_spikes", "heldout_spikes", "heldin_forward", "heldout_forward", "hand_vel", "hand_pos"):
        arrays[key] = arrays[key].astype(np.float32)
    return arrays


def _append_test_trials(arrays: dict, dataset, window: dict, forward: dict) -> dict:
    """Add the test file's trials: held-in spikes only; everything NLB withholds is NaN."""
    from nlb_tools.make_tensors import make_stacked_array

    is_test = (dataset.trial_info["split"] == "test").to_numpy()
    spikes = make_stacked_array(dataset, ["spikes"], window, is_test)["spikes"]
    ahead = make_stacked_array(dataset, ["spikes"], forward, is_test)["spikes"]
    if spikes.shape[2] != arrays["heldin_spikes"].shape[2]:
        raise MazeDataError(f"the test file has {spikes.shape[2]} units but the train file "
                            f"{arrays['heldin_spikes'].shape[2]} held-in units")
    n = len(spikes)
    withheld = lambda like: np.full((n,) + like.shape[1:], np.nan, np.float32)  # noqa: E731
    extra = {"heldin_spikes": spikes, "heldin_forward": ahead,
             "heldout_spikes": withheld(arrays["heldout_spikes"]),
             "heldout_forward": withheld(arrays["heldout_forward"]),
             "hand_vel": withheld(arrays["hand_vel"]), "hand_pos": withheld(arrays["hand_pos"]),
             "condition": np.full(n, -1), "split": np.array(["test"] * n),
             "trial_id": dataset.trial_info["trial_id"].to_numpy()[is_test]}
    return {**arrays, **{key: np.concatenate([arrays[key], value]) for key, value in extra.items()}}


# ---------------------------------------------------------------- scoring with nlb_tools

def _nlb_target(session: MazeSession) -> dict:
    """The session's cached eval targets in the form nlb_tools.evaluation.evaluate reads."""
    target = {}
    for key, value in session.eval_target.items():
        if key.endswith("/flat"):
            base = key[: -len("/flat")]
            ends = np.cumsum(session.eval_target[f"{base}/lengths"])
            per_condition = np.empty(len(ends), dtype=object)  # 1-D even if lengths are equal
            for i, indices in enumerate(np.split(value, ends[:-1])):
                per_condition[i] = indices
            target[base] = per_condition
        elif not key.endswith("/lengths"):
            target[key] = value
    return target


def evaluate_rates(session: MazeSession, heldin_rates, heldout_rates, *, heldin_forward=None,
                   heldout_forward=None) -> dict[str, float]:
    """Score predicted rates with nlb_tools (train -> val, as in the NLB local evaluation).

    heldin_rates (B, T, N_in), heldout_rates (B, T, N_out): predicted *expected spike counts per
    bin* (not Hz) for every train and val trial of ``session`` (test rows, if present, are
    ignored). Train rows feed nlb_tools' velocity decoder; val rows are scored.
    heldin_forward / heldout_forward (B or B_val, F, N), optional: predictions for the 200 ms after
    the window, giving fp-bps.

    Returns nlb_tools' metrics: 'co-bps', 'vel R2', 'psth R2' and, with forward rates, 'fp-bps'.
    """
    from nlb_tools.evaluation import evaluate

    train, val = session.trials("train"), session.trials("val")
    def rows(array, name, which, n_units):
        array = np.asarray(array, dtype=np.float64)
        if array.ndim != 3 or array.shape[2] != n_units or array.shape[0] not in (len(session.split), len(val)):
            raise ValueError(f"{name}: expected shape (trials, bins, {n_units}) for all "
                             f"{len(session.split)} trials of the session, got {array.shape}")
        if not np.isfinite(array).all() or (array < 0).any():
            raise ValueError(f"{name}: rates must be finite and >= 0 (expected counts per bin)")
        return array[which].copy() if array.shape[0] == len(session.split) else array.copy()

    n_in, n_out = session.heldin_spikes.shape[2], session.heldout_spikes.shape[2]
    user = {
        "train_rates_heldin": rows(heldin_rates, "heldin_rates", train, n_in),
        "train_rates_heldout": rows(heldout_rates, "heldout_rates", train, n_out),
        "eval_rates_heldin": rows(heldin_rates, "heldin_rates", val, n_in),
        "eval_rates_heldout": rows(heldout_rates, "heldout_rates", val, n_out),
    }
    if heldin_forward is not None and heldout_forward is not None:
        user["eval_rates_heldin_forward"] = rows(heldin_forward, "heldin_forward", val, n_in)
        user["eval_rates_heldout_forward"] = rows(heldout_forward, "heldout_forward", val, n_out)
    # nlb_tools looks datasets up by name (with a "_20" suffix only for 20 ms); the metrics
    # themselves do not depend on the key, so any bin width is scored under the plain name.
    results = evaluate({session.name: _nlb_target(session)}, {session.name: user})
    metrics = next(iter(results[0].values()))
    # The scaled sessions' keys carry a trial-count prefix, e.g. "[100] co-bps".
    return {key.split("] ")[-1]: float(value) for key, value in metrics.items()}


# ---------------------------------------------------------------- baselines

def mean_rate_baseline(session: MazeSession) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's mean count per bin over the train trials, everywhere: co-bps of about 0."""
    train = session.trials("train")
    def flat(spikes):
        mean = spikes[train].mean(axis=(0, 1))
        return np.broadcast_to(mean, spikes.shape[:2] + mean.shape).copy()
    return flat(session.heldin_spikes), flat(session.heldout_spikes)


def smoothing_baseline(session: MazeSession, kernel_sd_ms: float = 50.0,
                       l2: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """NLB's smoothing baseline: Gaussian-smoothed held-in spikes are the held-in rates, and a
    Poisson GLM from their log onto the held-out units (fit on train trials) the held-out rates.

    Returns (heldin_rates (B, T, N_in), heldout_rates (B, T, N_out)), expected counts per bin.
    """
    import torch
    from scipy.ndimage import gaussian_filter1d

    smoothed = gaussian_filter1d(session.heldin_spikes.astype(np.float64),
                                 kernel_sd_ms / session.bin_ms, axis=1, mode="nearest")
    heldin_rates = np.maximum(smoothed, 1e-4)
    n_trials, n_bins, n_in = heldin_rates.shape
    # Log rates, standardised, plus a constant column: the GLM's inputs for every bin.
    features = np.log(heldin_rates).reshape(-1, n_in)
    features = (features - features.mean(0)) / (features.std(0) + 1e-8)
    inputs = torch.tensor(np.hstack([features, np.ones((len(features), 1))]), dtype=torch.float64)
    train = torch.tensor(np.repeat(session.split == "train", n_bins))
    targets = torch.tensor(session.heldout_spikes.reshape(len(features), -1), dtype=torch.float64)
    weights = torch.zeros(n_in + 1, targets.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200, line_search_fn="strong_wolfe")

    def poisson_loss():  # all held-out units at once: they share inputs, so one fit is enough
        optimizer.zero_grad()
        log_rate = inputs[train] @ weights
        loss = (log_rate.exp() - targets[train] * log_rate).mean() + l2 * weights[:-1].pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(poisson_loss)
    with torch.no_grad():
        heldout_rates = (inputs @ weights).exp().numpy().reshape(n_trials, n_bins, -1)
    return heldin_rates, heldout_rates


def _heldout_bits_per_spike(session: MazeSession, heldout_rates: np.ndarray) -> float:
    """co-bps on the val trials with nlb_tools' own bits_per_spike (no decoder, no PSTH)."""
    from nlb_tools.evaluation import bits_per_spike

    val = session.trials("val")
    return float(bits_per_spike(np.asarray(heldout_rates, np.float64)[val],
                                session.heldout_spikes[val].astype(np.float64)))


# ---------------------------------------------------------------- benchmark

def bench_mc_maze(sessions=tuple(SESSIONS), bin_ms: int = 5, data_dir: str | Path | None = None) -> dict:
    """Time the synthetic stand-in end to end and score simple baselines with nlb_tools.

    Uses a fresh temporary folder unless ``data_dir`` is given. Returns (and prints) one dict
    per session: seconds to generate, first (processing) and cached load, MB on disk, and
    co-bps / vel R2 / psth R2 / fp-bps for the true rates, a smoothing + Poisson GLM baseline
    and a mean-rate baseline.
    """
    import tempfile

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(data_dir) if data_dir is not None else Path(scratch)
        for name in sessions:
            folder = session_dir(name, synthetic=True, data_dir=root)
            started = time.perf_counter()
            synthetic_maze.generate_session(name, folder, *dandi_paths(name))
            generated = time.perf_counter()
            session = load_mc_maze(name, bin_ms, data_dir=root, synthetic=True)
            first = time.perf_counter()
            load_mc_maze(name, bin_ms, data_dir=root, synthetic=True)
            cached = time.perf_counter()
            truth = synthetic_maze.true_rates(session)
            row = {
                "generate_s": round(generated - started, 2), "first_load_s": round(first - generated, 2),
                "cached_load_s": round(cached - first, 3),
                "disk_mb": round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 1),
                "true_rates": evaluate_rates(session, **truth),
                "smoothing_glm": evaluate_rates(session, *smoothing_baseline(session)),
                # co-bps only: nlb_tools' velocity decoder crawls on constant inputs.
                "mean_rate": {"co-bps": _heldout_bits_per_spike(session, mean_rate_baseline(session)[1])},
            }
            results[name] = row
            print(f"{name} [{synthetic_maze.SYNTHETIC_LABEL}] {bin_ms} ms: {row}")
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="benchmark the synthetic stand-in")
    parser.add_argument("--download", nargs="*", metavar="NAME", help="download sessions from DANDI")
    parser.add_argument("--bin-ms", type=int, default=5)
    args = parser.parse_args()
    if args.bench:
        bench_mc_maze(bin_ms=args.bin_ms)
    for session_name in args.download or ():
        print(download_session(session_name))
