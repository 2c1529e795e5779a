"""Fixed-length windows streamed from many NWB files, for pretraining on many sessions.

Loading every session into memory (what :func:`load_mc_maze` does for one) stops working at a
few dozen sessions. :class:`WindowDataset` instead lists, when built, every window of every file
from the files' small tables (trials, units, observation intervals), and reads a file's spikes
only when one of its windows is asked for, keeping at most ``max_loaded`` files in memory
(least recently used goes first). Two kinds of window:

* ``mode="trials"``: one window per trial, ``align_ms`` around movement onset, cut by exactly
  the rules of the eager loader (:func:`.maze_nwb.window_bins`), so a trialled NLB file streams
  the same windows as :func:`.maze_nwb.process_session` returns;
* ``mode="continuous"``: the observed recording cut into ``window_ms`` windows every
  ``stride_ms``, never across a gap in the observation intervals (trials are ignored).

Every window is one item: all units of its session (held-in first, then held-out, as the
models order them), its session's index, the hand velocity and the reach condition (-1 and
NaN where a file has none). :func:`collate_windows` pads units like :func:`.sessions.stack_sessions`
and returns a :class:`WindowBatch`, a :class:`~tutorial_utils.batches.Batch` with the condition
and the global unit ids added. Unit ids are global through a vocabulary of ``"session/unit"``
tokens, so one model can keep a learned embedding per unit across all sessions.

Many processes (DistributedDataParallel): ``dataset.shard(rank, world_size)`` keeps every
``world_size``-th window, so ranks see disjoint windows that together cover the data, and
:meth:`WindowDataset.epoch_order` shuffles deterministically per (seed, epoch), file by file so
that a small file cache is enough.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import signal

from ..batches import Batch
from .maze_catalogue import AREAS, MazeDataError
from .maze_nwb import corrupt_file_error, unit_areas, window_bins

MODES = ("trials", "continuous")
BIN_WIDTHS_MS = (1, 2, 5, 10, 20, 25, 50)
N_VERSIONS = 3  # MC_Maze: trial_version 0..2 per target, so condition = (trial_type - 1) * 3 + version
REQUIRED_UNITS = ("units/id", "units/spike_times", "units/spike_times_index")
REQUIRED_TRIALS = ("intervals/trials/start_time", "intervals/trials/stop_time", "intervals/trials/move_onset_time")


class Vocabulary:
    """Tokens <-> indices 0..n-1, in the order first seen (sessions by name, units as "session/unit")."""

    def __init__(self, tokens=()):
        self.tokens: list[str] = []
        self._index: dict[str, int] = {}
        self.add(tokens)

    def add(self, tokens) -> np.ndarray:
        """Append the tokens not yet known; return the indices of all ``tokens``."""
        out = []
        for token in tokens:
            token = str(token)
            if token not in self._index:
                self._index[token] = len(self.tokens)
                self.tokens.append(token)
            out.append(self._index[token])
        return np.asarray(out, np.int64)

    def index(self, tokens) -> np.ndarray:
        """Indices of known ``tokens``; a KeyError names the first unknown one."""
        missing = [str(t) for t in tokens if str(t) not in self._index]
        if missing:
            raise KeyError(f"{missing[0]!r} is not in the vocabulary ({len(self)} tokens, e.g. {self.tokens[:3]}); "
                           "add() it first (a new session's units get new ids)")
        return np.asarray([self._index[str(t)] for t in tokens], np.int64)

    def copy(self) -> "Vocabulary":
        return type(self)(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token) -> bool:
        return str(token) in self._index

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} tokens: {self.tokens[:3]}{' ...' if len(self) > 3 else ''})"


class UnitVocabulary(Vocabulary):
    """Global unit ids: one token ``"<session>/<unit id>"`` per recorded unit."""

    @staticmethod
    def token(session: str, unit_id) -> str:
        return f"{session}/{int(unit_id)}"


@dataclass
class WindowBatch(Batch):
    """A :class:`Batch` of streamed windows, with what the files add.

    spikes (B, T, N_max) all units (held-in then held-out), zero-padded to the widest session;
    session (B,) long; behaviour (B, T, 2) (NaN where a file has none); unit_areas (B, N_max) long
    (index into AREAS, -1 padding); condition (B,) long (-1: none); units (B, N_max) long global
    unit ids (-1 padding); heldout (B, N_max) bool (padding False).
    """

    condition: torch.Tensor | None = None
    units: torch.Tensor | None = None
    heldout: torch.Tensor | None = None


@dataclass(frozen=True)
class FileInfo:
    """What a file's small tables say (read when the dataset is built)."""

    path: Path
    session: str
    unit_ids: np.ndarray  # (N,) in item order: held-in then held-out
    heldout: np.ndarray  # (N,) bool
    areas: np.ndarray  # (N,) int index into AREAS
    n_ms: int  # length of the recording: from clock 0 to the end of observation (nlb_tools' convention)
    n_rows: int  # its bins (a last partial bin included, as nlb_tools' resample keeps it)


@dataclass
class LoadedFile:
    """A file's spikes and behaviour in memory: what the cache holds."""

    keys: np.ndarray  # sorted unit_position * KEY_STRIDE + millisecond of every spike
    behaviour: np.ndarray | None  # (n_rows, d) decimated to bin_ms, or None


KEY_STRIDE = np.int64(1) << 40  # > any recording length in ms


def session_name(path: Path) -> str:
    """A file's session name: its stem up to ``_desc-`` (DANDI's naming), e.g. ``sub-Jenkins_ses-small``."""
    return Path(path).stem.split("_desc-")[0]


def _read(f, item: str, path: Path) -> np.ndarray:
    try:
        return f[item][()]
    except KeyError:
        raise MazeDataError(f"{path} is missing {item}; the file is incomplete or not in the NLB NWB layout") from None


def _seconds_to_us(values) -> np.ndarray:
    """Float seconds -> integer microseconds, rounded exactly as nlb_tools' timedeltas are."""
    return pd.to_timedelta(np.asarray(values, np.float64), unit="s").to_numpy().astype("timedelta64[us]").astype(np.int64)


def _ragged(f, name: str, path: Path) -> list[np.ndarray]:
    flat, ends = _read(f, name, path), _read(f, f"{name}_index", path)
    return np.split(flat, ends[:-1].astype(np.int64))


class WindowDataset(torch.utils.data.Dataset):
    """Windows of many NWB files, read lazily (see the module docstring).

    Args:
        files: NWB paths (NLB layout: a units table with spike_times, obs_intervals, heldout;
            for ``mode="trials"`` a trials table with move_onset_time).
        bin_ms: bin width (bins start at multiples of it on the file's clock); the length of
            ``align_ms`` (trials) and ``window_ms``/``stride_ms`` (continuous) must be multiples of it.
        mode: "trials" or "continuous".
        align_ms: (start, stop) around movement onset, trials mode (NLB's (-250, 450) by default).
        splits: trials mode: the trials kept, by the ``split`` column (default train and val, as the
            eager loader; None keeps every trial).
        window_ms, stride_ms: continuous mode: window length and step (stride defaults to the length).
        behaviour: name of the 1 kHz behaviour series in ``processing/behavior``.
        max_loaded: at most this many files' spikes are in memory at once.
        unit_vocab, session_vocab: extend these vocabularies (copied, not changed) instead of new ones.
        seed: the shuffling seed of :meth:`epoch_order`.
    Items (``dataset[i]``): dict of spikes (T, N_s) float32, session () long, behaviour (T, 2)
    float32, condition () long, units (N_s,) long, unit_areas (N_s,) long, heldout (N_s,) bool.
    """

    def __init__(self, files, *, bin_ms: int = 5, mode: str = "trials", align_ms: tuple[int, int] = (-250, 450),
                 splits=("train", "val"), window_ms: int | None = None, stride_ms: int | None = None,
                 behaviour: str = "hand_vel", max_loaded: int = 2, unit_vocab: Vocabulary | None = None,
                 session_vocab: Vocabulary | None = None, seed: int = 0):
        files = [Path(f) for f in ([files] if isinstance(files, (str, Path)) else files)]
        if not files:
            raise ValueError("files: expected a non-empty list of NWB paths")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(bin_ms, bool) or bin_ms not in BIN_WIDTHS_MS:
            raise ValueError(f"bin_ms must be one of {BIN_WIDTHS_MS} (milliseconds), got {bin_ms!r}")
        if isinstance(max_loaded, bool) or not isinstance(max_loaded, int) or max_loaded < 1:
            raise ValueError(f"max_loaded must be a whole number >= 1, got {max_loaded!r}")
        if mode == "trials":
            start, stop = align_ms
            if stop <= start or (stop - start) % bin_ms:
                raise ValueError(f"align_ms must be (start, stop) with start < stop and a length that is a multiple "
                                 f"of bin_ms={bin_ms}; got {align_ms!r}")
            self.n_bins = (stop - start) // bin_ms
        else:
            if window_ms is None:
                raise ValueError("mode='continuous' needs window_ms (the window length in ms)")
            stride_ms = window_ms if stride_ms is None else stride_ms
            for name, value in (("window_ms", window_ms), ("stride_ms", stride_ms)):
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0 or value % bin_ms:
                    raise ValueError(f"{name} must be a positive multiple of bin_ms={bin_ms}, got {value!r}")
            self.n_bins = window_ms // bin_ms
        if len(set(files)) != len(files):
            raise ValueError(f"files has duplicates: {[str(f) for f in files if files.count(f) > 1][:2]}")
        self.files, self.bin_ms, self.mode, self.behaviour_name = files, bin_ms, mode, behaviour
        self.max_loaded, self.seed = max_loaded, seed
        self.session_vocab = session_vocab.copy() if session_vocab is not None else Vocabulary()
        self.unit_vocab = unit_vocab.copy() if unit_vocab is not None else UnitVocabulary()
        self.info: list[FileInfo] = []
        windows = []  # (file, first bin, condition)
        for position, path in enumerate(files):
            info, first_bins, conditions = self._scan(path, align_ms, splits, window_ms, stride_ms)
            self.info.append(info)
            windows += [(position, b, c) for b, c in zip(first_bins, conditions)]
        names = [info.session for info in self.info]
        if len(set(names)) != len(names):
            raise ValueError(f"two files have the same session name ({names}); session names come from "
                             "the file stem before '_desc-': give each session its own name")
        self.session_ids = self.session_vocab.add(names)
        self.unit_index = [self.unit_vocab.add([UnitVocabulary.token(i.session, u) for u in i.unit_ids])
                           for i in self.info]
        self.windows = np.asarray(windows, np.int64).reshape(-1, 3)
        self._cache: OrderedDict[int, LoadedFile] = OrderedDict()
        self.loads = 0  # how many times a file was read (for tests and logging)
        self.max_loaded_seen = 0

    # ------------------------------------------------------------ building: the small tables only

    def _scan(self, path, align_ms, splits, window_ms, stride_ms):
        import h5py

        if not path.exists():
            raise MazeDataError(f"{path} does not exist; check the path (WindowDataset lists its windows when built)")
        required = REQUIRED_UNITS + (REQUIRED_TRIALS if self.mode == "trials" else ())
        try:
            with h5py.File(path, "r") as f:
                missing = [item for item in required if item not in f]
                if missing:
                    raise MazeDataError(f"{path} is missing {', '.join(missing)} (needed for mode={self.mode!r}); "
                                        "the file is incomplete or not in the NLB NWB layout")
                ids = _read(f, "units/id", path).astype(np.int64)
                heldout = f["units/heldout"][()].astype(bool) if "units/heldout" in f else np.zeros(len(ids), bool)
                if "units/obs_intervals" in f:
                    intervals = _ragged(f, "units/obs_intervals", path)
                    observed = intervals[0].reshape(-1, 2)  # nlb_tools takes the first unit's intervals
                    end_s = max(float(i.reshape(-1, 2)[-1, 1]) for i in intervals if i.size)
                else:  # no observation intervals: observed from 0 to the last spike
                    spike_times = _read(f, "units/spike_times", path)
                    end_s = float(spike_times.max()) + 0.001 if spike_times.size else 0.0
                    observed = np.array([[0.0, end_s]])
                trials = {}
                if self.mode == "trials":
                    for column in ("start_time", "stop_time", "move_onset_time", "split", "trial_type", "trial_version"):
                        if f"intervals/trials/{column}" in f:
                            trials[column] = f[f"intervals/trials/{column}"][()]
        except MazeDataError:
            raise
        except Exception as error:  # h5py raises OSError, KeyError or RuntimeError for damaged files
            raise corrupt_file_error(path, error) from None
        order = np.concatenate([np.flatnonzero(~heldout), np.flatnonzero(heldout)])
        areas = unit_areas(path)
        n_ms = int(round(end_s * 1000))
        n_rows = -(-n_ms // self.bin_ms)  # nlb_tools' resample keeps a last partial bin
        info = FileInfo(path, session_name(path), ids[order], heldout[order],
                        np.array([AREAS.index(areas[u]) for u in ids[order]], np.int64), n_ms, n_rows)
        observed_bins = self._observed_bins(observed, n_rows)
        if self.mode == "trials":
            first_bins, conditions = self._trial_windows(path, trials, align_ms, splits, n_rows, observed_bins)
        else:
            first_bins = self._continuous_windows(observed_bins, window_ms // self.bin_ms, stride_ms // self.bin_ms)
            conditions = np.full(len(first_bins), -1)
        return info, first_bins, conditions

    def _observed_bins(self, intervals: np.ndarray, n_rows: int) -> np.ndarray:
        """(n_rows,) bool: bins that are wholly inside an observation interval."""
        observed_ms = np.zeros(n_rows * self.bin_ms, bool)
        for start, end in intervals:
            # nlb_tools' rule for the 1 ms rows: [ceil(start), floor(end)) milliseconds
            observed_ms[int(np.ceil(round(start * 1000, 6))): int(np.floor(round(end * 1000, 6)))] = True
        return observed_ms.reshape(n_rows, self.bin_ms).all(axis=1)

    def _trial_windows(self, path, trials, align_ms, splits, n_rows, observed_bins):
        n_trials = len(trials["start_time"])
        keep = np.ones(n_trials, bool)
        if splits is not None and "split" in trials:
            split = np.array([s.decode() if isinstance(s, bytes) else str(s) for s in trials["split"]])
            keep = np.isin(split, list(splits))
        rows = np.flatnonzero(keep)
        index, usable = window_bins(_seconds_to_us(trials["move_onset_time"]), _seconds_to_us(trials["start_time"]),
                                    _seconds_to_us(trials["stop_time"]), rows, align_ms, self.bin_ms, n_rows)
        usable &= observed_bins[np.clip(index, 0, n_rows - 1)]
        complete = usable.all(axis=1)
        if not complete.all():
            print(f"note: {path.name}: skipped {int((~complete).sum())} trial(s) whose window runs past the end "
                  "of the recording, into another trial or outside the observed intervals")
        if "trial_type" in trials and "trial_version" in trials:
            conditions = ((trials["trial_type"].astype(np.int64) - 1) * N_VERSIONS
                          + trials["trial_version"].astype(np.int64))[rows]
        else:
            conditions = np.full(len(rows), -1)
        return index[complete, 0], conditions[complete]

    @staticmethod
    def _continuous_windows(observed_bins: np.ndarray, n_bins: int, stride_bins: int) -> np.ndarray:
        """First bins of windows of ``n_bins`` every ``stride_bins``, restarting in each observed stretch."""
        padded = np.concatenate([[False], observed_bins, [False]])
        edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
        firsts = [np.arange(start, end - n_bins + 1, stride_bins) for start, end in zip(edges[::2], edges[1::2])]
        return np.concatenate(firsts).astype(np.int64) if firsts else np.zeros(0, np.int64)

    # ------------------------------------------------------------ reading: one file at a time

    def _load(self, position: int) -> LoadedFile:
        if position in self._cache:
            self._cache.move_to_end(position)
            return self._cache[position]
        while len(self._cache) >= self.max_loaded:  # make room first: never more than max_loaded in memory
            self._cache.popitem(last=False)
        loaded = self._read_file(self.info[position])
        self._cache[position] = loaded
        self.loads += 1
        self.max_loaded_seen = max(self.max_loaded_seen, len(self._cache))
        return loaded

    def _read_file(self, info: FileInfo) -> LoadedFile:
        import h5py

        try:
            with h5py.File(info.path, "r") as f:
                per_unit = _ragged(f, "units/spike_times", info.path)
                ids = f["units/id"][()].astype(np.int64)
                series = f.get(f"processing/behavior/{self.behaviour_name}")
                behaviour = None
                if series is not None:
                    behaviour = self._behaviour(info, series)
        except MazeDataError:
            raise
        except Exception as error:
            raise corrupt_file_error(info.path, error) from None
        position_of = {int(u): p for p, u in enumerate(info.unit_ids)}
        keys = []
        for unit, times in zip(ids, per_unit):
            ms = np.round(np.asarray(times, np.float64) * 1000, 6).astype(np.int64)  # nlb_tools' 1 ms binning
            keys.append(position_of[int(unit)] * KEY_STRIDE + ms)
        return LoadedFile(np.sort(np.concatenate(keys)) if keys else np.zeros(0, np.int64), behaviour)

    def _behaviour(self, info: FileInfo, series) -> np.ndarray:
        """The series on the recording's 1 ms clock, filtered and decimated like nlb_tools' resample."""
        timing = series.get("starting_time")  # pynwb stores a regular series as starting_time + its rate
        rate = float(timing.attrs.get("rate", 0.0)) if timing is not None else 0.0
        start = float(timing[()]) if timing is not None else 0.0
        if abs(rate - 1000.0) > 1e-6 or abs(start * 1000 - round(start * 1000)) > 1e-6:
            raise MazeDataError(f"{info.path}: {self.behaviour_name} must be sampled at 1 kHz from a whole "
                                "millisecond (as in the NLB files) to be streamed")
        data = np.asarray(series["data"][()], np.float64).reshape(len(series["data"]), -1)
        n_ms = info.n_ms
        first = int(round(start * 1000))
        on_clock = np.full((n_ms, data.shape[1]), np.nan)
        stop = min(n_ms, first + len(data))
        on_clock[max(first, 0):stop] = data[max(-first, 0): stop - first]
        if np.isnan(on_clock).all():
            return None
        on_clock = pd.DataFrame(on_clock).interpolate(limit_direction="both").to_numpy()
        if self.bin_ms > 1:
            on_clock = signal.decimate(on_clock, self.bin_ms, axis=0, n=500, ftype="fir")
        return on_clock.astype(np.float32)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        position, first, condition = (int(v) for v in self.windows[i])
        info, loaded = self.info[position], self._load(position)
        n_units = len(info.unit_ids)
        lo_ms, hi_ms = first * self.bin_ms, (first + self.n_bins) * self.bin_ms
        spikes = np.zeros((self.n_bins, n_units), np.float32)
        unit = np.arange(n_units, dtype=np.int64) * KEY_STRIDE
        lo, hi = np.searchsorted(loaded.keys, unit + lo_ms), np.searchsorted(loaded.keys, unit + hi_ms)
        for u in np.flatnonzero(hi > lo):  # units that fired in the window
            ms = loaded.keys[lo[u]:hi[u]] - unit[u]
            spikes[:, u] = np.bincount((ms - lo_ms) // self.bin_ms, minlength=self.n_bins)
        if loaded.behaviour is not None:
            behaviour = loaded.behaviour[first: first + self.n_bins]
        else:
            behaviour = np.full((self.n_bins, 2), np.nan, np.float32)
        return {"spikes": torch.from_numpy(spikes), "session": torch.tensor(self.session_ids[position]),
                "behaviour": torch.as_tensor(behaviour, dtype=torch.float32),
                "condition": torch.tensor(condition), "units": torch.as_tensor(self.unit_index[position]),
                "unit_areas": torch.as_tensor(info.areas), "heldout": torch.as_tensor(info.heldout)}

    # ------------------------------------------------------------ many processes, many epochs

    def shard(self, rank: int, world_size: int) -> "WindowDataset":
        """The windows of process ``rank`` of ``world_size``: every world_size-th window from ``rank``.

        Shards are disjoint and together cover every window; their sizes differ by at most one
        (DistributedDataParallel needs the same number of steps per rank: use the smallest shard's
        length, ``len(dataset) // world_size`` windows per rank, or drop the last incomplete batch).
        The shard shares the vocabularies and file list but has its own cache.
        """
        for name, value in (("rank", rank), ("world_size", world_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        shard = object.__new__(type(self))
        shard.__dict__.update(self.__dict__)
        shard.windows = self.windows[rank::world_size]
        shard.window_ids = self.window_id()[rank::world_size]
        shard._cache, shard.loads, shard.max_loaded_seen = OrderedDict(), 0, 0
        return shard

    def window_id(self) -> np.ndarray:
        """(len,) the position of each window in the unsharded dataset (to check shards)."""
        return getattr(self, "window_ids", np.arange(len(self.windows)))

    def epoch_order(self, epoch: int) -> np.ndarray:
        """A permutation of range(len(self)) for ``epoch``, the same for the same (seed, epoch):
        files in a shuffled order, each file's windows shuffled and kept together, so that a
        cache of one file reads each file once per epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        files = rng.permutation(len(self.files))
        by_file = [np.flatnonzero(self.windows[:, 0] == f) for f in files]
        return np.concatenate([rng.permutation(w) for w in by_file]).astype(np.int64)

    def batches(self, batch_size: int, epoch: int = 0, drop_last: bool = False):
        """Yield :class:`WindowBatch` es of ``batch_size`` windows in :meth:`epoch_order`."""
        order = self.epoch_order(epoch)
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            yield collate_windows([self[int(i)] for i in order[start:start + batch_size]])

    def describe(self) -> str:
        return (f"WindowDataset: {len(self)} windows of {self.n_bins} bins of {self.bin_ms} ms ({self.mode}) from "
                f"{len(self.files)} files, {len(self.session_vocab)} sessions, {len(self.unit_vocab)} units; "
                f"at most {self.max_loaded} files in memory")

    __repr__ = describe


def collate_windows(items: list[dict]) -> WindowBatch:
    """Stack items into a :class:`WindowBatch`, zero-padding units to the widest item (ids -1)."""
    if not items:
        raise ValueError("collate_windows: expected a non-empty list of items")
    width = max(item["spikes"].shape[1] for item in items)

    def pad(key, value):
        return torch.stack([torch.nn.functional.pad(item[key], (0, width - item[key].shape[-1]), value=value)
                            for item in items])

    return WindowBatch(
        spikes=pad("spikes", 0.0), session=torch.stack([item["session"] for item in items]),
        behaviour=torch.stack([item["behaviour"] for item in items]),
        unit_areas=pad("unit_areas", -1), condition=torch.stack([item["condition"] for item in items]),
        units=pad("units", -1), heldout=torch.stack([torch.nn.functional.pad(item["heldout"], (0, width - len(item["heldout"])))
                                                     for item in items]),
    )
