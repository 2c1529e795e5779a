"""As many simulated MC_Maze-like sessions as asked, for the scaling experiment of Notebook 4C.

A foundation model is pretrained on many recordings and then adapted to a new one. This module
makes such a collection offline: one simulated monkey (the unit pool and reach geometry of
:mod:`.synthetic_maze`, whose simulator it reuses, with its v2 firing rates: 4-25 Hz, denser and
easier than the real recordings and the mc_maze stand-in v3) recorded in ``n_sessions`` sessions. What the
sessions share and what they do not:

* **shared**: the latent dynamics (preparation, reach rotation, "go" signal) and how hand
  velocity follows them, so what a model learns about the dynamics in one session transfers;
* **per session**: which units are recorded (a random subset of the 400-unit pool, of a
  random size) and NLB-style unit ids, so no two sessions have the same inputs;
* **per session drift**: every recorded unit's modulation gain and baseline rate are
  perturbed (``gain`` multiplies its latent weights, ``baseline_shift`` adds to its log rate,
  part shared by the session, part per unit), as tuning drifts between real recording days.

Sessions are seeded by ``(seed, session index)``, so the first k of ``simulate_sessions(8)``
are ``simulate_sessions(k)``: nested pretraining sets for a scaling curve.
:func:`write_sessions_nwb` writes each session as an NWB file in the NLB MC_Maze train-file
layout (the writer of :mod:`.synthetic_maze`), which :func:`.maze_nwb.process_session` and
:mod:`.streaming` read. Nothing here is real data.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import signal

from . import synthetic_maze
from .synthetic_maze import N_VERSIONS, NLB_WINDOW_MS, SimulatedTrials

HELDOUT_FRACTION = 0.25  # as NLB's MC_Maze sessions (35 of 142 units in mc_maze_small)
VAL_FRACTION = 0.25  # NLB's train/val split of the train file
BIN_WIDTHS_MS = (5, 10, 20)  # the widths the NWB loaders accept


@dataclass(repr=False)
class SessionData:
    """One simulated session, trial-aligned over NLB's window (-250, +450) ms around movement onset.

    Shapes: B trials, T = 700 / bin_ms bins, N units (held-in first, then the ``n_heldout``
    held-out ones: the order models predict them in, as :meth:`MazeSession.all_spikes`).

    spikes     (B, T, N) float32 counts
    rates      (B, T, N) float32 true expected counts per bin (ground truth)
    behaviour  (B, T, 2) float32 hand velocity (mm/s), filtered and decimated like nlb_tools does
    conditions (B,) int64 reach condition 0..23 = target * 3 + path version (global, same in every
               session); ``conditions // 3`` is the reach direction (0..7)
    split      (B,) str 'train' / 'val'
    unit_id    (N,) int64 NLB-style ids (1xxx PMd, 2xxx M1); area (N,) str 'PMd' / 'M1'
    pool_index (N,) int: which unit of the simulated monkey's pool each unit is (ground truth)
    gain, baseline_shift (N,) the session's drift of each unit (ground truth)
    time_ms    (T,) start of each bin relative to movement onset
    """

    name: str
    bin_ms: int
    spikes: np.ndarray
    rates: np.ndarray
    behaviour: np.ndarray
    conditions: np.ndarray
    split: np.ndarray
    n_heldout: int
    unit_id: np.ndarray
    area: np.ndarray
    pool_index: np.ndarray
    gain: np.ndarray
    baseline_shift: np.ndarray
    time_ms: np.ndarray
    recording: SimulatedTrials = field(repr=False)  # the continuous recording, for the NWB writer

    @property
    def n_heldin(self) -> int:
        return self.spikes.shape[2] - self.n_heldout

    @property
    def heldin_spikes(self) -> np.ndarray:
        return self.spikes[..., : self.n_heldin]

    @property
    def heldout_spikes(self) -> np.ndarray:
        return self.spikes[..., self.n_heldin:]

    @property
    def heldout(self) -> np.ndarray:
        """(N,) bool: which units NLB would hold out (the last ``n_heldout``)."""
        return np.arange(self.spikes.shape[2]) >= self.n_heldin

    def trials(self, split: str) -> np.ndarray:
        """Indices of the trials in ``split`` ('train' or 'val')."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val' (simulated sessions have no test file), got {split!r}")
        return np.flatnonzero(self.split == split)

    def describe(self) -> str:
        return (f"{self.name} [{synthetic_maze.SYNTHETIC_LABEL}]: {len(self.spikes)} trials "
                f"({(self.split == 'train').sum()} train, {(self.split == 'val').sum()} val), "
                f"{self.spikes.shape[1]} bins of {self.bin_ms} ms, {self.n_heldin} held-in + "
                f"{self.n_heldout} held-out units")

    __repr__ = describe


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def simulate_sessions(n_sessions: int, n_trials: int = 100, seed: int = 0, *, bin_ms: int = 5,
                      n_units: tuple[int, int] = (80, 140), drift: float = 0.2) -> list[SessionData]:
    """Simulate ``n_sessions`` sessions of one simulated monkey (see the module docstring).

    Args:
        n_sessions: how many sessions (>= 1).
        n_trials: trials per session (>= 4, so that the val split is not empty).
        seed: the monkey and every session follow from it; session i uses (seed, i).
        bin_ms: 5, 10 or 20 (as the NWB loaders).
        n_units: each session records a number of units drawn uniformly in [low, high]
            (at most the 400-unit pool); a quarter of them (rounded) are held out.
        drift: size of the per-session changes (0: every session sees its units tuned alike).
    Returns:
        a list of :class:`SessionData`, named ``session_00``, ``session_01``, ...
    """
    n_sessions = _check_int(n_sessions, "n_sessions", 1)
    n_trials = _check_int(n_trials, "n_trials", 4)
    if isinstance(bin_ms, bool) or bin_ms not in BIN_WIDTHS_MS:
        raise ValueError(f"bin_ms must be one of {BIN_WIDTHS_MS} (milliseconds), got {bin_ms!r}")
    pool = 2 * synthetic_maze.POOL_PER_AREA
    expected = f"n_units must be (low, high) whole numbers with 2 <= low <= high <= {pool} (the pool), got {n_units!r}"
    if isinstance(n_units, (str, bytes)) or np.ndim(n_units) != 1 or len(n_units) != 2:
        raise ValueError(expected)
    low, high = n_units
    if any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) for n in n_units) or not 2 <= low <= high <= pool:
        raise ValueError(expected)
    if not (np.isfinite(drift) and drift >= 0):
        raise ValueError(f"drift must be a non-negative number, got {drift!r}")
    # The v2 monkey, denser than the real recordings: at the real rates (the mc_maze stand-in v3)
    # few-shot adaptation from 10 trials fails in Notebook 4C's quick budget (docs/standin_v3.md).
    monkey = synthetic_maze.make_monkey(seed, as_sparse_as_real=False)
    return [_simulate_session(index, monkey, n_trials, seed, int(bin_ms), (low, high), float(drift))
            for index in range(n_sessions)]


def _simulate_session(index, monkey, n_trials, seed, bin_ms, n_units, drift) -> SessionData:
    rng = np.random.default_rng([seed, index])
    count = int(rng.integers(n_units[0], n_units[1] + 1))
    units = np.sort(rng.choice(len(monkey.bias), count, replace=False))
    unit_ids = synthetic_maze.make_unit_ids(monkey.area[units], rng)
    # Held-out units go last (the models' convention); within each group, by id like the NWB table.
    n_heldout = int(round(HELDOUT_FRACTION * count))
    heldout = np.zeros(count, bool)
    heldout[rng.choice(count, n_heldout, replace=False)] = True
    order = np.lexsort((unit_ids, heldout))
    units, unit_ids = units[order], unit_ids[order]
    # Drift: a session-wide and a per-unit part, on the modulation gain and the baseline.
    gain = np.exp(drift * (rng.normal() + rng.normal(size=count)) / np.sqrt(2))
    shift = drift * (rng.normal() + rng.normal(size=count)) / np.sqrt(2)
    bias, weights = monkey.bias.copy(), monkey.weights.copy()
    bias[units] += shift
    weights[units] *= gain[:, None]
    recording = synthetic_maze.simulate_trials(n_trials, units, replace(monkey, bias=bias, weights=weights), rng)
    split = np.array(["train"] * n_trials, dtype=object)
    split[rng.permutation(n_trials)[: max(1, int(round(VAL_FRACTION * n_trials)))]] = "val"

    start_ms, stop_ms = NLB_WINDOW_MS
    onsets_ms = np.round(np.asarray(recording.trials["move_onset_time"]) * 1000).astype(np.int64)
    spikes = bin_trial_spikes(recording.spike_times, onsets_ms + start_ms, stop_ms - start_ms, bin_ms)
    rates = synthetic_maze.expected_counts(recording.window_latents, bias[units], weights[units], bin_ms,
                                           start_ms, stop_ms)
    behaviour = decimated_windows(recording.hand_vel, onsets_ms + start_ms, stop_ms - start_ms, bin_ms)
    conditions = np.asarray(recording.trials["maze_id"], np.int64)
    return SessionData(
        name=f"session_{index:02d}", bin_ms=bin_ms, spikes=spikes, rates=rates, behaviour=behaviour,
        conditions=conditions, split=split.astype(str), n_heldout=n_heldout, unit_id=unit_ids,
        area=monkey.area[units], pool_index=units, gain=gain, baseline_shift=shift,
        time_ms=np.arange(start_ms, stop_ms, bin_ms), recording=recording,
    )


def bin_trial_spikes(spike_times: list, window_start_ms: np.ndarray, length_ms: int, bin_ms: int) -> np.ndarray:
    """Counts (trials, length_ms // bin_ms, units) float32 of each unit's spikes (times in s) in
    [start, start + length) of every trial's window; a spike in ms m belongs to bin (m - start) // bin_ms."""
    n_bins = length_ms // bin_ms
    counts = np.zeros((len(window_start_ms), n_bins, len(spike_times)), np.float32)
    for unit, times in enumerate(spike_times):
        ms = np.floor(np.asarray(times) * 1000).astype(np.int64)  # the simulator puts spikes inside their ms
        trial = np.searchsorted(window_start_ms, ms, side="right") - 1
        offset = ms - window_start_ms[np.clip(trial, 0, None)]
        inside = (trial >= 0) & (offset >= 0) & (offset < n_bins * bin_ms)
        np.add.at(counts, (trial[inside], offset[inside] // bin_ms, unit), 1)
    return counts


def decimated_windows(series: np.ndarray, window_start_ms: np.ndarray, length_ms: int, bin_ms: int) -> np.ndarray:
    """(trials, length_ms // bin_ms, d) float32 windows of a 1 ms series (clock 0 at row 0),
    anti-alias filtered and decimated to ``bin_ms`` the way nlb_tools' ``NWBDataset.resample`` does."""
    values = series.astype(np.float32).astype(np.float64)  # as stored in the NWB file
    if bin_ms > 1:
        values = signal.decimate(values, bin_ms, axis=0, n=500, ftype="fir")
    first = window_start_ms // bin_ms
    index = first[:, None] + np.arange(length_ms // bin_ms)
    return values[np.clip(index, 0, len(values) - 1)].astype(np.float32)


def write_sessions_nwb(sessions: list[SessionData], root) -> list[Path]:
    """Write each session as ``root/<name>/<name>_desc-train_behavior+ecephys.nwb`` in the NLB
    MC_Maze train-file layout (trials with split train/val, units with ``heldout``, hand
    position and velocity), plus ``ground_truth.npz`` beside it. Returns the NWB paths."""
    if isinstance(sessions, SessionData) or not all(isinstance(s, SessionData) for s in sessions):
        raise ValueError("sessions: expected a list of SessionData (from simulate_sessions)")
    names = [s.name for s in sessions]
    if len(set(names)) != len(names):
        raise ValueError(f"session names must be unique (they name the files), got {names}")
    paths = []
    for session in sessions:
        folder = Path(root) / session.name
        path = folder / f"{session.name}_desc-train_behavior+ecephys.nwb"
        synthetic_maze._write_nwb(path, session.recording, session.unit_id, session.heldout,
                                  session.split.astype(object), session.name, with_behavior=True)
        np.savez(folder / "ground_truth.npz", rates=session.rates, pool_index=session.pool_index,
                 gain=session.gain, baseline_shift=session.baseline_shift, unit_id=session.unit_id,
                 conditions=session.conditions, bin_ms=session.bin_ms)
        paths.append(path)
    return paths


def condition_of(trial_type, trial_version) -> np.ndarray:
    """The global condition id (0..23) of NWB trial_type (1..8) and trial_version (0..2) columns."""
    return (np.asarray(trial_type, np.int64) - 1) * N_VERSIONS + np.asarray(trial_version, np.int64)
