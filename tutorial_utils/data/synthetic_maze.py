"""An offline stand-in for the NLB MC_Maze sessions, written as NWB files in the DANDI layout.

The real recordings (monkey Jenkins, delayed reaches through a maze, Utah arrays in PMd and M1)
live on DANDI. Where there is no network this module *simulates* a monkey doing the same task
and writes files that ``nlb_tools.nwb_interface.NWBDataset`` reads exactly as it reads the real
ones, so every notebook runs the same code path offline. Nothing here is real data, and every
object built from these files says so.

The generative model, in one paragraph. A 9-dimensional latent state drives every unit:

* 4 **preparatory** dimensions: after the target appears the state relaxes to a point set by the
  reach condition, holds through the delay, and collapses around movement onset;
* 4 **movement** dimensions: hand velocity and acceleration 100 ms in the future, so the state
  sweeps a rotation (velocity and its derivative are a quarter cycle apart) during the reach;
* 1 **condition-independent** dimension: a large "go" signal that rises just before movement.

Each unit fires as an inhomogeneous Poisson process with rate ``exp(bias + weights @ latent)``.
The biases are set so the units fire as sparsely as real sorted units do (median 3.3 Hz, many
near-silent units; see :func:`target_rates_hz`), the condition-independent signal is strong
enough that the trial-averaged PSTH explains as much variance as in the real recordings, and each
unit's excitability varies from trial to trial on its own (``PRIVATE_GAIN_SD``), so the population
predicts a unit less well than its shared latent state alone would. With these, the stand-in's
spiking statistics (rates, empty bins, Fano factor, PSTH share, modulation depth, what smoothing
+ GLM scores) match the real mc_maze_small file's within ``yardstick.STAND_IN_TOLERANCE``
(tests/test_yardstick.py): co-smoothing on it is about as hard as on real data. (Before v3 the
units fired ~7x more, and every model looked better than it would on real recordings.)
PMd units weight the preparatory dimensions heavily, M1 units the movement ones. Hand velocity is
an exact linear readout of the movement dimensions ``LAG_MS`` earlier, so a decoder's lag search
has a right answer. One shared "monkey" (the unit pool and condition geometry) drives all four
sessions; each session records its own subset and number of units from the pool, so stitching
sessions together is meaningful.

Sessions (trials = train+val in the train file, plus a test file like NLB's):

============== ============ =========== ==================== ============================
name           train+val    test        units (in + out)     real NLB
============== ============ =========== ==================== ============================
mc_maze_small  100 (75/25)  100         142 (107 + 35)       100 / 100, 142 units
mc_maze_medium 250          100         150 (112 + 38)       250 / 100, 152 units
mc_maze_large  500          100         160 (120 + 40)       500 / 100, 162 units
mc_maze        600          150         182 (137 + 45)       2295 / 574, 182 units (scaled
                                                             down here to keep generation fast)
============== ============ =========== ==================== ============================

The files copy the real ones' layout, quirks included (tests compare them with a real file):
unit ids name the array (1xxx PMd, 2xxx M1: array digit, two-digit channel, unit on that
channel), ``units/electrodes`` holds the *per-array* channel number 0-95 for units of both
arrays, the electrodes table lists the 96 PMd electrodes first (ids 1-192, x/y/z and impedance
NaN), and a test file holds only each trial's window (-250 to +450 ms around movement onset),
cut out and laid back to back with 100 ms gaps, with no behaviour and no held-out units.

Ground truth (latents over the NLB window, unit weights, the lag) is saved next to the NWB files
as ``ground_truth.npz``; :func:`true_rates` turns it into expected counts per bin.
"""
from __future__ import annotations

import os
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from .maze_catalogue import MazeDataError

LAG_MS = 100  # hand velocity follows the movement latents by this much
WINDOW_MS = (-250, 650)  # ground truth covers NLB's window (-250, 450) plus 200 ms forward prediction
N_TARGETS = 8
N_VERSIONS = 3  # trial_version 0: straight reach, 1: curved counter-clockwise, 2: curved clockwise
POOL_PER_AREA = 200  # the simulated monkey has this many PMd and this many M1 units
LATENT_DIM = 9  # 4 preparatory + 4 movement + 1 condition-independent
PREP, MOVE, CIS = slice(0, 4), slice(4, 8), slice(8, 9)
SYNTHETIC_LABEL = "SYNTHETIC STAND-IN"
# Firing rates as sparse as the real recordings' (see target_rates_hz): median, and the spread of
# log rate below and above it.
RATE_MEDIAN_HZ, RATE_LOG_SD_BELOW, RATE_LOG_SD_ABOVE = 3.3, 1.62, 0.90
GENERATOR_VERSION = 3  # bump when the model or file layout changes, so cached files are regenerated
TEST_GAP_MS = 100  # test files hold each trial's NLB window only, laid back to back with this gap
NLB_WINDOW_MS = (-250, 450)
# Each unit's own excitability varies from trial to trial (log-normal gain, shared with no other
# unit): real units are noisier than their shared latent state says, which is what keeps the
# smoothing baseline's co-bps and the Fano factor at the real file's values (v3).
PRIVATE_GAIN_SD = 0.3


@dataclass(frozen=True)
class SessionSize:
    n_trainval: int
    n_test: int
    n_heldin: int
    n_heldout: int
    n_pmd: int | None = None  # units on the PMd array; None: half of them
    n_heldin_pmd: int | None = None  # held-in units on the PMd array; None: drawn at random


SESSION_SIZES = {
    "mc_maze_small": SessionSize(100, 100, 107, 35, n_pmd=72, n_heldin_pmd=52),  # as the real files
    "mc_maze_medium": SessionSize(250, 100, 112, 38),
    "mc_maze_large": SessionSize(500, 100, 120, 40),
    "mc_maze": SessionSize(600, 150, 137, 45),
}


# ---------------------------------------------------------------- the simulated monkey

@dataclass(frozen=True)
class Monkey:
    """What every session shares: the unit pool and the condition geometry.

    bias: (pool,) log firing rate at rest (Hz); weights: (pool, LATENT_DIM); area: (pool,) str;
    prep_points: (N_TARGETS * N_VERSIONS, 4) preparatory state of each condition;
    hold_points: (N_TARGETS, 4) state while holding at each target after the reach;
    private_gain_sd: spread of each unit's own per-trial excitability (log-normal, mean 1).
    """

    bias: np.ndarray
    weights: np.ndarray
    area: np.ndarray
    prep_points: np.ndarray
    hold_points: np.ndarray
    private_gain_sd: float = PRIVATE_GAIN_SD


def make_monkey(seed: int = 0, as_sparse_as_real: bool = True) -> Monkey:
    """The simulated monkey. ``as_sparse_as_real=False`` gives the v2 monkey (the same draws): units
    at 4-25 Hz with a weak condition-independent signal and no private gain noise, denser and
    easier than the real recordings; Notebook 4C's many-session generator still uses it
    (synthetic_sessions.py, docs/standin_v3.md)."""
    rng = np.random.default_rng(seed)
    n = POOL_PER_AREA
    area = np.array(["PMd"] * n + ["M1"] * n)
    rate_quantile = rng.uniform(size=2 * n)  # each unit's place in the firing-rate distribution
    # Per-area weight scales on (prep, move, cis): PMd is mostly preparatory, M1 mostly movement.
    # The large condition-independent weights give the trial-averaged PSTH the share of the variance it has
    # in the real recordings (~4%, see yardstick.spiking_statistics); M1 carries more of that signal than
    # PMd, which (beside the zero-mean tuning weights) lets a linear classifier tell the areas apart.
    scale = {"PMd": (0.8, 0.25, 1.0), "M1": (0.25, 0.7, 1.9)}
    if not as_sparse_as_real:
        scale = {"PMd": (0.8, 0.25, 0.3), "M1": (0.25, 0.7, 0.4)}
    weights = np.zeros((2 * n, LATENT_DIM))
    for name, (s_prep, s_move, s_cis) in scale.items():
        rows = area == name
        k = rows.sum()
        weights[rows, PREP] = rng.normal(0, s_prep, (k, 4))
        weights[rows, MOVE] = rng.normal(0, s_move, (k, 4))
        weights[rows, CIS] = np.abs(rng.normal(s_cis, s_cis / 2, (k, 1)))
    # Preparatory points: a smooth map of reach direction and curvature plus a little
    # condition-specific structure, so nearby reaches have nearby preparatory states.
    mixing = rng.normal(0, 1, (4, 4)) / 2
    points = []
    for target in range(N_TARGETS):
        angle = 2 * np.pi * target / N_TARGETS
        for version in range(N_VERSIONS):
            curvature = (0.0, 1.0, -1.0)[version]
            features = np.array([np.cos(angle), np.sin(angle),
                                 curvature * np.cos(angle), curvature * np.sin(angle)])
            points.append(mixing @ features + rng.normal(0, 0.3, 4))
    hold_points = rng.normal(0, 0.5, (N_TARGETS, 4))
    if not as_sparse_as_real:
        return Monkey(np.log(4.0 + 21.0 * rate_quantile), weights, area, np.array(points), hold_points, 0.0)
    monkey = Monkey(np.zeros(2 * n), weights, area, np.array(points), hold_points)
    # Set each unit's resting rate so that its mean rate over the task is its target rate.
    gain = np.exp(_reference_latents(monkey) @ weights.T).mean(axis=0)  # (pool,) mean of exp(weights @ latent)
    bias = np.log(target_rates_hz(rate_quantile)) - np.log(gain)
    return Monkey(bias, weights, area, monkey.prep_points, hold_points)


def target_rates_hz(quantile: np.ndarray) -> np.ndarray:
    """Mean firing rates (Hz) at the given quantiles of the real recordings' rate distribution.

    Sorted units in real MC_Maze fire sparsely and with a long tail of near-silent units: in the
    real mc_maze_small test file the units' mean rates have median 3.3 Hz, 10th percentile 0.41 Hz
    and 90th percentile 10.4 Hz. A log-normal with a wider lower than upper half (a split normal in
    log rate) puts these three quantiles where the real ones are.
    """
    from scipy.stats import norm

    z = norm.ppf(np.clip(quantile, 1e-6, 1 - 1e-6))
    spread = np.where(z < 0, RATE_LOG_SD_BELOW, RATE_LOG_SD_ABOVE)
    return np.exp(np.log(RATE_MEDIAN_HZ) + spread * z)


def _reference_latents(monkey: Monkey) -> np.ndarray:
    """(samples, LATENT_DIM) latent states over the NLB window of one typical trial per condition."""
    rng = np.random.default_rng(12345)
    t_ms = np.arange(*NLB_WINDOW_MS)
    return np.concatenate([trial_latents(t_ms, target, version, -700, monkey, rng)
                           for target in range(N_TARGETS) for version in range(N_VERSIONS)])


# ---------------------------------------------------------------- one trial

def reach_velocity(t_ms: np.ndarray, target: int, version: int) -> np.ndarray:
    """Hand velocity (mm/s), shape (len(t_ms), 2), for time in ms relative to movement onset.

    A bell-shaped speed profile (120 mm reach, peak ~180 ms after onset). Curved versions sweep
    the heading through +-50 degrees over the reach, so the path bows out but ends near the
    same target as the straight reach.
    """
    peak_ms, width_ms, distance_mm = 180.0, 70.0, 120.0
    z = (t_ms - peak_ms) / width_ms
    speed = distance_mm * np.exp(-0.5 * z**2) / (width_ms / 1000 * np.sqrt(2 * np.pi))
    progress = np.cumsum(speed) / np.sum(speed) if speed.sum() > 0 else np.zeros_like(speed)
    curvature = (0.0, 1.0, -1.0)[version]
    heading = 2 * np.pi * target / N_TARGETS + curvature * np.deg2rad(100.0) * (progress - 0.5)
    return speed[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)


def trial_latents(t_ms, target, version, target_on_ms, monkey, rng) -> np.ndarray:
    """Latent state, shape (len(t_ms), LATENT_DIM), at times t_ms relative to movement onset."""
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    latents = np.zeros((len(t_ms), LATENT_DIM))
    # Preparatory: rises after the target appears, collapses ~150 ms before movement onset.
    point = monkey.prep_points[target * N_VERSIONS + version]
    point = point * (1 + 0.1 * rng.normal()) + 0.15 * rng.normal(size=4)  # trial-to-trial variability
    rise = 1 - np.exp(-np.clip(t_ms - target_on_ms - 60, 0, None) / 60.0)
    fall = sigmoid(-(t_ms + 100) / 40.0)
    hold = sigmoid((t_ms - 350) / 50.0)  # after the reach: a posture state for the target
    latents[:, PREP] = point * (rise * fall)[:, None] + monkey.hold_points[target] * hold[:, None]
    # Movement: velocity and acceleration LAG_MS in the future (a rotation in this plane pair).
    velocity = reach_velocity(t_ms + LAG_MS, target, version)
    acceleration = np.gradient(velocity, axis=0) * 1000.0  # mm/s^2 on a 1 ms grid
    latents[:, MOVE] = np.hstack([velocity / 500.0, acceleration * 0.07 / 500.0])
    # Condition-independent "go" signal, partly decaying late in the movement.
    latents[:, 8] = sigmoid((t_ms + 120) / 25.0) * (1 - 0.5 * sigmoid((t_ms - 400) / 60.0))
    return latents


def _smooth_noise(n: int, sd_ms: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) Gaussian noise smoothed over ~sd_ms, scaled to unit-ish standard deviation * 0.15."""
    from scipy.ndimage import gaussian_filter1d

    noise = gaussian_filter1d(rng.normal(size=(n, 2)), sd_ms, axis=0, mode="nearest")
    return 0.15 * noise / (np.std(noise) + 1e-12)


def rates_hz(latents: np.ndarray, bias: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Firing rates (Hz), shape (..., units): exp(bias + weights @ latent), capped at 200 Hz."""
    return np.exp(np.minimum(bias + latents @ weights.T, np.log(200.0)))


# ---------------------------------------------------------------- one session

def _session_rng(name: str, purpose: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{name}/{purpose}".encode()))


@dataclass
class SimulatedTrials:
    """Continuous recording of ``n`` trials on a 1 ms grid starting at clock 0.

    spike_times: per unit, sorted spike times (s); trials: dict of per-trial columns (times in s);
    hand_pos / hand_vel: (n_ms, 2); window_latents: (n, 900, LATENT_DIM) over WINDOW_MS.
    """

    spike_times: list
    trials: dict
    hand_pos: np.ndarray
    hand_vel: np.ndarray
    window_latents: np.ndarray


def simulate_trials(n: int, units: np.ndarray, monkey: Monkey, rng: np.random.Generator) -> SimulatedTrials:
    """Simulate ``n`` back-to-back trials recorded from pool units ``units`` (indices)."""
    iti_ms = 200  # hand returns to the centre between trials (spikes not observed then)
    clock_ms = 0
    spike_ms, spike_unit = [], []  # one entry per spike, collected over trials
    columns = {key: [] for key in ("start_time", "stop_time", "target_on_time", "go_cue_time",
                                   "move_onset_time", "delay", "rt", "trial_type", "trial_version",
                                   "maze_id", "success")}
    pos_chunks, window_latents = [], []
    bias, weights = monkey.bias[units], monkey.weights[units]
    for _ in range(n):
        target, version = rng.integers(N_TARGETS), rng.integers(N_VERSIONS)
        delay = int(rng.integers(25, 56)) * 10  # 250-550 ms
        rt = int(np.clip(rng.normal(300, 40), 200, 420))
        # Movement onset on a clock of 20k + 10 ms, so the NLB window start (-250 ms) falls
        # exactly on a bin edge for 5, 10 and 20 ms bins and true rates line up with counts.
        start = clock_ms
        move = start + 100 + delay + rt
        move += (10 - move) % 20
        stop = move + 700
        t_rel = np.arange(start, stop) - move  # 1 ms grid relative to movement onset
        target_on_rel = start + 100 - move
        latents = trial_latents(t_rel, target, version, target_on_rel, monkey, rng)
        rates = rates_hz(latents, bias, weights)
        if monkey.private_gain_sd > 0:  # each unit's own excitability this trial (mean 1: true_rates stay exact)
            sd = monkey.private_gain_sd
            rates = rates * np.exp(sd * rng.normal(size=len(units)) - sd**2 / 2)
        counts = rng.poisson(rates / 1000.0)
        ms, unit = np.nonzero(counts)
        spike_ms.append(np.repeat(start + ms, counts[ms, unit]))
        spike_unit.append(np.repeat(unit, counts[ms, unit]))
        window = (t_rel >= WINDOW_MS[0]) & (t_rel < WINDOW_MS[1])
        window_latents.append(latents[window].astype(np.float32))
        # The hand does what the latents planned LAG_MS earlier, give or take motor noise the
        # recorded units do not see (so even the true rates cannot decode velocity perfectly).
        velocity = reach_velocity(t_rel, target, version) * (1 + 0.08 * rng.normal())
        velocity += _smooth_noise(len(t_rel), 40.0, rng) * (np.abs(velocity) + 20.0)
        # Hand position: centre until the reach, then integrate velocity; smooth return after.
        pos = np.cumsum(velocity, axis=0) / 1000.0
        ramp = 0.5 * (1 + np.cos(np.linspace(0, np.pi, iti_ms)))[:, None]
        pos_chunks += [pos, pos[-1] * ramp]
        for key, value in (("start_time", start), ("stop_time", stop),
                           ("target_on_time", start + 100), ("go_cue_time", start + 100 + delay),
                           ("move_onset_time", move)):
            columns[key].append(value / 1000.0)
        columns["delay"].append(delay)
        columns["rt"].append(move - (start + 100 + delay))
        columns["trial_type"].append(int(target) + 1)
        columns["trial_version"].append(int(version))
        columns["maze_id"].append(int(target) * N_VERSIONS + int(version))
        columns["success"].append(True)
        clock_ms = stop + iti_ms
    # Behaviour must end with the last trial: NWBDataset drops series that outlast the spikes.
    hand_pos = np.concatenate(pos_chunks[:-1])
    hand_vel = np.gradient(hand_pos, axis=0) * 1000.0
    spike_ms, spike_unit = np.concatenate(spike_ms), np.concatenate(spike_unit)
    # Spread spikes inside their millisecond so 1 ms binning reproduces the drawn counts.
    times = (spike_ms + rng.uniform(0.05, 0.95, spike_ms.size)) / 1000.0
    order = np.lexsort((times, spike_unit))
    boundaries = np.searchsorted(spike_unit[order], np.arange(1, len(units)))
    spike_times = np.split(times[order], boundaries)
    return SimulatedTrials(spike_times, columns, hand_pos, hand_vel, np.stack(window_latents))


# ---------------------------------------------------------------- NWB writing

def _units_table(nwb, sim: SimulatedTrials, unit_ids, heldout):
    """The Units table, built column by column (adding units one at a time is ~50x slower).

    As in the DANDI files: ``electrodes`` holds each unit's channel number on its own array
    (0-95, for PMd and M1 units alike), and spikes are observed only inside trials
    (``obs_intervals``).
    """
    from hdmf.common import DynamicTableRegion, ElementIdentifiers, VectorData, VectorIndex
    from pynwb.misc import Units

    def ragged(name, description, flat, lengths, region_of=None):
        if region_of is None:
            data = VectorData(name=name, description=description, data=flat)
        else:
            data = DynamicTableRegion(name=name, description=description, data=flat, table=region_of)
        return [data, VectorIndex(name=f"{name}_index", data=np.cumsum(lengths), target=data)]

    n_units = len(sim.spike_times)
    intervals = np.stack([sim.trials["start_time"], sim.trials["stop_time"]], axis=1)
    electrodes = np.asarray(unit_ids) % 1000 // 10 - 1  # channel 1-96 -> per-array row 0-95
    columns = (
        [VectorData(name="heldout", description="Whether the unit is held out in the benchmark",
                    data=np.asarray(heldout, bool))]
        + ragged("spike_times", "the spike times for each unit", np.concatenate(sim.spike_times),
               [len(times) for times in sim.spike_times])
        + ragged("obs_intervals", "the observation intervals for each unit",
                 np.tile(intervals, (n_units, 1)), [len(intervals)] * n_units)
        + ragged("electrodes", "the electrodes that each spike unit came from", electrodes,
                 [1] * n_units, region_of=nwb.electrodes)
    )
    return Units(name="units", description="data on spiking units [synthetic]",
                 id=ElementIdentifiers(name="id", data=np.asarray(unit_ids, np.int64)), columns=columns,
                 electrode_table=nwb.electrodes)


def _write_nwb(path: Path, sim: SimulatedTrials, unit_ids: np.ndarray, heldout: np.ndarray,
               split: np.ndarray, session: str, with_behavior: bool) -> None:
    """Write one NWB file laid out like the DANDI MC_Maze files (to a temp name, then rename)."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.behavior import SpatialSeries
    from pynwb.file import Subject

    nwb = NWBFile(
        session_description=f"{SYNTHETIC_LABEL}: simulated delayed reaches (not real data), "
                            f"generated by tutorial_utils.data.synthetic_maze v{GENERATOR_VERSION}",
        identifier=str(uuid.UUID(int=zlib.crc32(str(path.name).encode()))),
        session_start_time=datetime(2009, 9, 28, tzinfo=timezone(timedelta(hours=-7))),
        session_id=session.split("_")[-1].replace("maze", "full"),  # "small", ... as on DANDI
        keywords=["synthetic", "Neural Latents Benchmark stand-in"],
        experiment_description=f"{SYNTHETIC_LABEL}: simulated center-out delayed reaching with maze barriers",
        subject=Subject(subject_id="Jenkins", species="Macaca mulatta", sex="M"),  # a simulated Jenkins
    )
    # Electrodes: two 96-channel arrays, PMd first, grouped and named like the DANDI files.
    groups = {}
    for area_name, region in (("PMd", "Dorsal premotor cortex"), ("M1", "Primary motor cortex")):
        device = nwb.create_device(name=f"electrode_array_{area_name}",
                                   description=f"simulated 96-electrode Utah array in {area_name}",
                                   manufacturer="Blackrock Microsystems")
        groups[area_name] = nwb.create_electrode_group(
            name=f"electrode_group_{area_name}", description=f"simulated Utah array in {area_name}",
            location=region, device=device)
    for index in range(192):
        area_name = "PMd" if index < 96 else "M1"
        nwb.add_electrode(id=index + 1, x=np.nan, y=np.nan, z=np.nan, imp=np.nan, location=area_name,
                          filtering="1000 Hz", group=groups[area_name])
    trial_info = sim.trials
    n_trials = len(trial_info["start_time"])
    nwb.add_trial_column("move_onset_time", "Time of movement onset")
    nwb.add_trial_column("split", "Trial split for the Neural Latents Benchmark")
    extra = [key for key in trial_info if key not in ("start_time", "stop_time", "move_onset_time")]
    if with_behavior:
        for key in extra:
            nwb.add_trial_column(key, key.replace("_", " "))
    for i in range(n_trials):
        row = {"start_time": trial_info["start_time"][i], "stop_time": trial_info["stop_time"][i],
               "move_onset_time": trial_info["move_onset_time"][i], "split": str(split[i])}
        if with_behavior:
            row.update({key: trial_info[key][i] for key in extra})
        nwb.add_trial(**row)
    nwb.units = _units_table(nwb, sim, unit_ids, heldout)
    if with_behavior:
        behavior = nwb.create_processing_module("behavior", "Processed behavioral data")
        # NWBDataset takes column names from "columns=[...]" in the comments.
        common = dict(rate=1000.0, starting_time=0.0, comments="columns=[x,y]")
        behavior.add(SpatialSeries(name="hand_pos", description="hand position (mm) [synthetic]",
                                   data=sim.hand_pos.astype(np.float32), reference_frame="centre",
                                   **common))
        behavior.add(SpatialSeries(name="cursor_pos", description="cursor position (mm) [synthetic]",
                                   data=sim.hand_pos.astype(np.float32), reference_frame="centre",
                                   **common))
        behavior.add(TimeSeries(name="hand_vel", description="hand velocity (mm/s) [synthetic]",
                                data=sim.hand_vel.astype(np.float32), unit="mm/s", **common))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.partial-{uuid.uuid4().hex[:8]}.nwb")  # unique per writer
    with NWBHDF5IO(str(partial), "w") as io:
        io.write(nwb)
    os.replace(partial, path)


def make_unit_ids(area: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """NLB-style unit ids: array digit (1 PMd, 2 M1), channel 01-96, unit number on the channel."""
    array_digit = np.where(area == "PMd", 1, 2)
    channel = rng.integers(1, 97, size=len(area))
    ids, seen = [], {}
    for digit, chan in zip(array_digit, channel):
        seen[digit, chan] = seen.get((digit, chan), 0) + 1
        ids.append(digit * 1000 + chan * 10 + seen[digit, chan])
    return np.array(ids, np.int64)


def cut_to_windows(sim: SimulatedTrials) -> SimulatedTrials:
    """Keep only each trial's NLB window, laid back to back with TEST_GAP_MS gaps, as NLB's test
    files do (the data after a test trial's window is withheld)."""
    before, after = NLB_WINDOW_MS
    length = after - before
    spike_times, trials = [[] for _ in sim.spike_times], {key: [] for key in ("start_time", "stop_time",
                                                                              "move_onset_time")}
    for i, move_s in enumerate(sim.trials["move_onset_time"]):
        old_start_ms = round(move_s * 1000) + before
        new_start_ms = i * (length + TEST_GAP_MS)
        for unit, times in enumerate(sim.spike_times):
            inside = times[(times >= old_start_ms / 1000) & (times < (old_start_ms + length) / 1000)]
            spike_times[unit].append(inside + (new_start_ms - old_start_ms) / 1000)
        trials["start_time"].append(new_start_ms / 1000)
        trials["stop_time"].append((new_start_ms + length) / 1000)
        trials["move_onset_time"].append((new_start_ms - before) / 1000)
    return SimulatedTrials([np.concatenate(t) for t in spike_times], trials, None, None, sim.window_latents)


def generate_session(name: str, root: Path, train_file: Path, test_file: Path) -> None:
    """Simulate session ``name`` and write its train file, test file and ``ground_truth.npz``
    (paths relative to ``root``). Deterministic: the same name always gives the same files."""
    if name not in SESSION_SIZES:
        raise ValueError(f"unknown session {name!r}; expected one of {sorted(SESSION_SIZES)}")
    size = SESSION_SIZES[name]
    monkey = make_monkey()
    rng = _session_rng(name, "units")
    # Each session records its own random subset of the pool, about half from each array.
    n_units = size.n_heldin + size.n_heldout
    n_pmd = size.n_pmd if size.n_pmd is not None else n_units // 2
    pool_pmd = np.flatnonzero(monkey.area == "PMd")
    pool_m1 = np.flatnonzero(monkey.area == "M1")
    units = np.concatenate([rng.choice(pool_pmd, n_pmd, replace=False),
                            rng.choice(pool_m1, n_units - n_pmd, replace=False)])
    unit_ids = make_unit_ids(monkey.area[units], rng)
    order = np.argsort(unit_ids)  # the units table is sorted by id, so PMd units come first
    units, unit_ids = units[order], unit_ids[order]
    area = monkey.area[units]
    heldout = np.zeros(n_units, bool)
    if size.n_heldin_pmd is None:
        heldout[rng.choice(n_units, size.n_heldout, replace=False)] = True
    else:
        for array, n_out in (("PMd", n_pmd - size.n_heldin_pmd), ("M1", size.n_heldout - n_pmd + size.n_heldin_pmd)):
            heldout[rng.choice(np.flatnonzero(area == array), n_out, replace=False)] = True

    train = simulate_trials(size.n_trainval, units, monkey, _session_rng(name, "train"))
    split = np.array(["train"] * size.n_trainval, dtype=object)
    split[_session_rng(name, "split").permutation(size.n_trainval)[: size.n_trainval // 4]] = "val"
    test = cut_to_windows(simulate_trials(size.n_test, units[~heldout], monkey, _session_rng(name, "test")))

    _write_nwb(root / train_file, train, unit_ids, heldout, split, name, with_behavior=True)
    _write_nwb(root / test_file, test, unit_ids[~heldout], np.zeros((~heldout).sum(), bool),
               np.array(["test"] * size.n_test, dtype=object), name, with_behavior=False)
    truth_path = root / "ground_truth.npz"
    partial = truth_path.with_name(f"ground_truth.partial-{uuid.uuid4().hex[:8]}.npz")
    np.savez(partial, version=GENERATOR_VERSION, lag_ms=LAG_MS, window_ms=np.array(WINDOW_MS),
             unit_pool_index=units, unit_id=unit_ids, unit_area=area, unit_heldout=heldout,
             unit_bias=monkey.bias[units], unit_weights=monkey.weights[units],
             train_latents=train.window_latents, test_latents=test.window_latents,
             train_condition=np.array(train.trials["maze_id"]), split=split.astype(str))
    os.replace(partial, truth_path)


# ---------------------------------------------------------------- ground truth for tests and baselines

def load_ground_truth(session_dir: Path) -> dict:
    """The arrays saved by :func:`generate_session` for one session directory."""
    path = Path(session_dir) / "ground_truth.npz"
    try:
        with np.load(path) as truth:
            return {key: truth[key] for key in truth.files}
    except Exception as error:  # BadZipFile, OSError, EOFError, ValueError: a damaged file
        raise MazeDataError(f"{path} cannot be read ({type(error).__name__}: {error}); delete the folder "
                            f"{path.parent} and load the session again to regenerate the stand-in") from None


def expected_counts(latents: np.ndarray, bias: np.ndarray, weights: np.ndarray, bin_ms: int,
                    start_ms: int, stop_ms: int) -> np.ndarray:
    """Expected spike counts per bin, shape (trials, (stop-start)//bin_ms, units), over
    [start_ms, stop_ms) relative to movement onset, from latents sampled over WINDOW_MS at 1 ms."""
    first = start_ms - WINDOW_MS[0]
    per_ms = rates_hz(latents[:, first:first + (stop_ms - start_ms)], bias, weights) / 1000.0
    trials, n_ms, units = per_ms.shape
    return per_ms.reshape(trials, n_ms // bin_ms, bin_ms, units).sum(axis=2).astype(np.float32)


def true_rates(session) -> dict[str, np.ndarray]:
    """The simulator's expected counts per bin for a synthetic :class:`MazeSession`'s trials.

    Returns a dict with heldin_rates (B, T, N_in), heldout_rates (B, T, N_out), heldin_forward
    (B, F, N_in) and heldout_forward (B, F, N_out), in the session's trial and unit order, so
    ``evaluate_rates(session, **true_rates(session))`` scores the ground truth.
    """
    if not session.is_synthetic:
        raise ValueError(f"{session.name} is real data: true rates exist only for the synthetic stand-in")
    truth = load_ground_truth(session.folder)
    is_test = session.split == "test"
    latents = np.concatenate([truth["train_latents"], truth["test_latents"][: is_test.sum()]])
    heldout = truth["unit_heldout"]
    bias, weights = truth["unit_bias"], truth["unit_weights"]
    window_stop = int(session.time_ms[-1]) + session.bin_ms
    start, stop = int(session.time_ms[0]), window_stop
    forward_stop = window_stop + (WINDOW_MS[1] - 450)
    window = expected_counts(latents, bias, weights, session.bin_ms, start, stop)
    ahead = expected_counts(latents, bias, weights, session.bin_ms, stop, forward_stop)
    return {"heldin_rates": window[..., ~heldout], "heldout_rates": window[..., heldout],
            "heldin_forward": ahead[..., ~heldout], "heldout_forward": ahead[..., heldout]}
