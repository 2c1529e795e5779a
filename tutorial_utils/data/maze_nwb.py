"""From MC_Maze NWB files to trial-aligned arrays, read with nlb_tools' ``NWBDataset``.

What the real DANDI files look like, and how this module reads them:

* Brain area of a unit. The unit id encodes the array: 1xxx units are on the PMd array, 2xxx on
  the M1 array (e.g. 1011 = array 1, channel 01, sorted unit 1). The ``units/electrodes`` column
  does *not*: it holds per-array channel numbers (0-95) for the units of both arrays, so
  following it into the 192-row electrodes table labels every unit PMd. :func:`unit_areas`
  therefore reads the id, and uses the electrode group only where it agrees with the ids.
* Test files hold each test trial's window only (-250 to +450 ms around movement onset),
  cut out of the session and laid back to back with 100 ms gaps; NLB withholds everything else.
  So the 200 ms after a test trial (the forward-prediction window) is not in the file: those
  bins are NaN here, never the gap or the next trial's first bins.

Every window is cut out by bin index (:func:`trial_windows`) with explicit rules: a bin past the
end of the recording or inside *another* trial is NaN. A trial whose main window has such a bin
is dropped, with a printed note; forward windows keep their trials and carry NaN.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .maze_catalogue import MazeDataError

# What the loader needs from each file, as HDF5 paths (checked before nlb_tools opens it).
REQUIRED_TEST = (
    "intervals/trials/start_time", "intervals/trials/stop_time", "intervals/trials/move_onset_time",
    "intervals/trials/split", "units/id", "units/spike_times", "units/obs_intervals", "units/heldout",
)
REQUIRED_TRAIN = REQUIRED_TEST + (
    "intervals/trials/trial_type", "intervals/trials/trial_version",
    "processing/behavior/hand_pos", "processing/behavior/hand_vel",
)
AREA_OF_ARRAY_DIGIT = {1: "PMd", 2: "M1"}  # the thousands digit of a unit id


def corrupt_file_error(path: Path, error: Exception) -> MazeDataError:
    return MazeDataError(
        f"{path} cannot be read as an NWB/HDF5 file ({type(error).__name__}: {error}). It is probably "
        "truncated or corrupt: delete it and load again (a real file is downloaded again, the "
        "synthetic stand-in regenerated).")


def check_nwb(path: Path, required: tuple[str, ...]) -> None:
    """Raise :class:`MazeDataError` naming ``path`` if it is unreadable or lacks a required item.

    Opens every required item (and reads its first element), so a damaged object header or
    chunk index shows up here with the file's name, not as a raw h5py error deep in nlb_tools.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [item for item in required if item not in f]
            for item in set(required) - set(missing):
                node = f[item]
                if isinstance(node, h5py.Dataset) and node.size:
                    node[(slice(0, 1),) * node.ndim] if node.ndim else node[()]
    except Exception as error:  # h5py raises OSError, KeyError or RuntimeError for damaged files
        raise corrupt_file_error(path, error) from None
    if missing:
        raise MazeDataError(f"{path} is missing {', '.join(missing)} (needed to build the MC_Maze "
                            "tensors); the file is incomplete or not an NLB MC_Maze file.")


def read_dataset(path: Path, bin_ms: int):
    """``NWBDataset`` for ``path`` resampled to ``bin_ms``, with errors that name the file."""
    from nlb_tools.nwb_interface import NWBDataset

    try:
        dataset = NWBDataset(str(path))
        dataset.resample(bin_ms)
    except Exception as error:
        raise MazeDataError(f"nlb_tools could not read {path} ({type(error).__name__}: {error}); "
                            "the file may be corrupt: delete it and load again") from error
    return dataset


def unit_areas(path: Path) -> dict[int, str]:
    """Map unit id -> 'PMd' or 'M1' for every unit in ``path``.

    The id's thousands digit decides (1 = PMd array, 2 = M1 array). Units whose id carries no
    array digit take their electrode's group (``electrode_group_PMd`` / ``electrode_group_M1``),
    but only if the electrode column agrees with the ids wherever both are known: in the DANDI
    files it holds per-array channel numbers and would label every unit PMd.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "units/id" not in f:
                raise MazeDataError(f"{path} has no units/id: it is incomplete or not an NLB MC_Maze "
                                    "file; delete it and load again")
            ids = [int(unit) for unit in f["units/id"][()]]
            by_group = _areas_from_electrodes(f, len(ids))
    except MazeDataError:
        raise
    except Exception as error:  # h5py raises OSError, KeyError or RuntimeError for damaged files
        raise corrupt_file_error(path, error) from None
    by_id = [AREA_OF_ARRAY_DIGIT.get(unit // 1000) if 1000 <= unit < 3000 else None for unit in ids]
    both = [(a, b) for a, b in zip(by_id, by_group) if a is not None and b is not None]
    electrodes_agree = all(a == b for a, b in both)
    areas = {}
    for unit, from_id, from_group in zip(ids, by_id, by_group):
        area = from_id if from_id is not None else from_group if electrodes_agree else None
        if area is None:
            raise MazeDataError(
                f"{path}: cannot tell the brain area of unit {unit}. Expected a unit id of the form "
                "1xxx (PMd array) or 2xxx (M1 array), as in the NLB files, or an electrode in "
                "electrode_group_PMd / electrode_group_M1 that agrees with the other units' ids. "
                "Check that this is an NLB MC_Maze file.")
        areas[unit] = area
    return areas


def _areas_from_electrodes(f, n_units: int) -> list:
    """Each unit's area according to its first electrode's group name (None where unknown)."""
    names = "units/electrodes", "units/electrodes_index", "general/extracellular_ephys/electrodes/group_name"
    if not all(name in f for name in names):
        return [None] * n_units
    rows, ends = f[names[0]][()], f[names[1]][()]
    groups = [g.decode() if isinstance(g, bytes) else str(g) for g in f[names[2]][()]]
    areas = []
    for first, end in zip(np.concatenate([[0], ends[:-1]]).astype(int), ends):
        group = groups[rows[first]] if end > first and 0 <= rows[first] < len(groups) else ""
        areas.append("PMd" if "PMd" in group else "M1" if "M1" in group else None)
    return areas


def _microseconds(times) -> np.ndarray:
    return np.asarray(times, dtype="timedelta64[us]").astype(np.int64)


def window_bins(onset_us: np.ndarray, start_us: np.ndarray, end_us: np.ndarray, rows: np.ndarray,
                align_range_ms: tuple[int, int], bin_ms: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The bins (rows of the binned recording) of each chosen trial's window, and which are usable.

    onset_us, start_us, end_us: every trial's movement onset, start and end (integer microseconds);
    rows: the trials wanted. Bin k covers [k, k+1) * bin_ms from the clock's 0. Returns index
    (B, T) int and keep (B, T) bool: False past the recording's ``n_rows`` bins or inside another trial.
    """
    bin_us = bin_ms * 1000
    n_bins = (align_range_ms[1] - align_range_ms[0]) // bin_ms
    first = -(-(onset_us[rows] + align_range_ms[0] * 1000) // bin_us)  # ceil division
    index = first[:, None] + np.arange(n_bins)  # (B, T) row of the binned data
    inside = (index >= 0) & (index < n_rows)
    # Another trial's bins: any bin overlapping [start, end) of a trial other than its own.
    order = np.argsort(start_us)
    bin_start = index * bin_us
    candidate = np.searchsorted(start_us[order], bin_start + bin_us, side="left") - 1
    other = order[np.clip(candidate, 0, None)]
    foreign = (candidate >= 0) & (end_us[other] > bin_start) & (other != np.asarray(rows)[:, None])
    return index, inside & ~foreign


def trial_windows(dataset, fields: list[str], rows: np.ndarray, align_range_ms: tuple[int, int],
                  bin_ms: int) -> tuple[dict, np.ndarray]:
    """Cut ``align_range_ms`` around each chosen trial's movement onset out of ``dataset.data``.

    rows: positions (into ``dataset.trial_info``) of the trials wanted, in order. The bins
    follow nlb_tools' convention (the first bin starts at the first bin edge at or after
    onset + start). A bin past the end of the recording, or inside another trial of the file,
    is NaN. Returns ({field: (B, T, N) float64}, complete (B,) bool: no bin was NaN-ed so).
    """
    info = dataset.trial_info
    index, keep = window_bins(_microseconds(info["move_onset_time"].to_numpy()),
                              _microseconds(info["start_time"].to_numpy()),
                              _microseconds(info["end_time"].to_numpy()), rows, align_range_ms, bin_ms,
                              len(dataset.data))
    arrays = {}
    for field in fields:
        values = dataset.data[field].to_numpy(dtype=np.float64)
        out = np.full(index.shape + values.shape[1:], np.nan)
        out[keep] = values[index[keep]]
        arrays[field] = out
    return arrays, keep.all(axis=1)


def process_session(name: str, bin_ms: int, train_file: Path, test_file: Path | None) -> dict:
    """Build every array of a :class:`MazeSession` (all splits) plus nlb_tools' eval targets."""
    from nlb_tools.make_tensors import PARAMS, make_eval_target_tensors

    check_nwb(train_file, REQUIRED_TRAIN)
    if test_file is not None:
        check_nwb(test_file, REQUIRED_TEST)
    params = PARAMS[name]
    start_ms, stop_ms = params["make_params"]["align_range"]
    forward_range = (stop_ms, stop_ms + params["fp_len"])
    areas = unit_areas(train_file)

    dataset = read_dataset(train_file, bin_ms)
    info = dataset.trial_info
    rows = np.flatnonzero(info["split"].isin(["train", "val"]).to_numpy())
    main, complete = trial_windows(dataset, ["spikes", "heldout_spikes", "hand_vel", "hand_pos"], rows,
                                   (start_ms, stop_ms), bin_ms)
    ahead, _ = trial_windows(dataset, ["spikes", "heldout_spikes"], rows, forward_range, bin_ms)
    kept = _drop_incomplete(train_file, info, rows, complete)
    chosen = info.iloc[rows[kept]]
    pairs = list(zip(chosen["trial_type"], chosen["trial_version"]))
    heldin_ids = np.asarray(dataset.data["spikes"].columns, dtype=np.int64)
    heldout_ids = np.asarray(dataset.data["heldout_spikes"].columns, dtype=np.int64)
    arrays = {
        "heldin_spikes": main["spikes"][kept], "heldout_spikes": main["heldout_spikes"][kept],
        "heldin_forward": ahead["spikes"][kept], "heldout_forward": ahead["heldout_spikes"][kept],
        "hand_vel": main["hand_vel"][kept], "hand_pos": main["hand_pos"][kept],
        "condition": np.unique(pairs, axis=0, return_inverse=True)[1].reshape(-1),
        "split": chosen["split"].to_numpy(str), "trial_id": chosen["trial_id"].to_numpy(np.int64),
        "heldin_unit_id": heldin_ids, "heldout_unit_id": heldout_ids,
        "heldin_area": np.array([areas[u] for u in heldin_ids]),
        "heldout_area": np.array([areas[u] for u in heldout_ids]),
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
        arrays = _append_test_trials(arrays, test_file, bin_ms, (start_ms, stop_ms), forward_range)
    for key in ("heldin_spikes", "heldout_spikes", "heldin_forward", "heldout_forward", "hand_vel", "hand_pos"):
        arrays[key] = arrays[key].astype(np.float32)
    return arrays


def _drop_incomplete(path: Path, info, rows: np.ndarray, complete: np.ndarray) -> np.ndarray:
    """Which of ``rows`` to keep; prints a note naming the trials dropped and why."""
    if not complete.all():
        dropped = info["trial_id"].to_numpy()[rows[~complete]].tolist()
        print(f"note: {path.name}: dropped {len(dropped)} trial(s) {dropped} whose window runs past "
              "the end of the recording or into another trial")
    return complete


def _append_test_trials(arrays: dict, test_file: Path, bin_ms: int, window: tuple, forward: tuple) -> dict:
    """Add the test file's trials: held-in spikes only; everything NLB withholds is NaN."""
    dataset = read_dataset(test_file, bin_ms)
    info = dataset.trial_info
    rows = np.flatnonzero((info["split"] == "test").to_numpy())
    main, complete = trial_windows(dataset, ["spikes"], rows, window, bin_ms)
    kept = _drop_incomplete(test_file, info, rows, complete)
    test_ids = np.asarray(dataset.data["spikes"].columns, dtype=np.int64)
    if not np.array_equal(test_ids, arrays["heldin_unit_id"]):
        raise MazeDataError(
            f"the units of {test_file} ({len(test_ids)}, ids {test_ids[:3].tolist()}...) are not the "
            f"held-in units of the train file ({len(arrays['heldin_unit_id'])}, ids "
            f"{arrays['heldin_unit_id'][:3].tolist()}...): the two files are not from the same session; "
            "delete them and download the session again")
    # A test file holds only each trial's window: the 200 ms after it are withheld like the
    # held-out units, so the forward arrays of test trials are NaN by rule.
    n = int(kept.sum())
    withheld = lambda like: np.full((n,) + like.shape[1:], np.nan, np.float32)  # noqa: E731
    extra = {"heldin_spikes": main["spikes"][kept], "heldin_forward": withheld(arrays["heldin_forward"]),
             "heldout_spikes": withheld(arrays["heldout_spikes"]),
             "heldout_forward": withheld(arrays["heldout_forward"]),
             "hand_vel": withheld(arrays["hand_vel"]), "hand_pos": withheld(arrays["hand_pos"]),
             "condition": np.full(n, -1), "split": np.array(["test"] * n),
             "trial_id": info["trial_id"].to_numpy(np.int64)[rows[kept]]}
    return {**arrays, **{key: np.concatenate([arrays[key], value]) for key, value in extra.items()}}
