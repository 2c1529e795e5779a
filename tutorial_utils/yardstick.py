"""The real-data yardstick: co-smoothing on real MC_Maze spikes that ship with the course.

The synthetic stand-in is easier than real recordings, so numbers tuned only on it mislead. This
yardstick scores every model on the one real NLB file we may redistribute in tests: the
mc_maze_small **test** file (DANDI 000140; 100 trials x 107 units, no behaviour). NLB withholds
its held-out units, so we make our own co-smoothing task inside the 107 held-in units.

The split is fixed and documented, so it cannot be tuned against:

* bins: 10 ms over NLB's window, -250 ms to +450 ms around movement onset (70 bins);
* trials: every 4th trial in file order (index % 4 == 3) is held out: 75 train / 25 test;
* units: within each array (PMd = ids 1xxx, M1 = ids 2xxx), sorted by id, every 4th unit
  (rank % 4 == 1) is hidden: 80 input / 27 hidden units (13 PMd + 14 M1).

A model sees the input units of the train trials and the hidden units of the train trials (as
targets), then predicts the hidden units of the test trials from their input units alone. The
score is co-bps (nlb_tools' ``bits_per_spike``) on the hidden units of the test trials.

    python -m tutorial_utils.bench real --profile quick     # prints and saves the table
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_FILE_ENV = "TUTORIAL_REAL_MAZE_FILE"
REAL_FILE = "shared/data/mc_maze_small_real/sub-Jenkins_ses-small_desc-test_ecephys.nwb"
BIN_MS = 10
WINDOW_MS = (-250, 450)


@dataclass(frozen=True)
class Yardstick:
    """The real counts and the fixed split. Shapes: B = 100 trials, T = 70 bins, N = 107 units.

    counts (B, T, N) spike counts; unit_id (N,) NWB unit ids; area (N,) 'PMd' / 'M1';
    train_trials (75,), test_trials (25,), input_units (80,), hidden_units (27,): indices.
    """

    counts: np.ndarray
    unit_id: np.ndarray
    area: np.ndarray
    train_trials: np.ndarray
    test_trials: np.ndarray
    input_units: np.ndarray
    hidden_units: np.ndarray

    def part(self, trials: str, units: str) -> np.ndarray:
        """Counts of ``trials`` in {'train', 'test'} and ``units`` in {'input', 'hidden'}."""
        rows = {"train": self.train_trials, "test": self.test_trials}[trials]
        columns = {"input": self.input_units, "hidden": self.hidden_units}[units]
        return self.counts[rows][:, :, columns]


def find_real_file(path: str | Path | None = None) -> Path:
    """The real mc_maze_small test file: ``path``, else ``$TUTORIAL_REAL_MAZE_FILE``, else the
    course's ``shared/data/mc_maze_small_real/`` in or above the repository."""
    if path is None and os.environ.get(REAL_FILE_ENV):
        path = os.environ[REAL_FILE_ENV]
    candidates = [Path(path)] if path is not None else [folder / REAL_FILE for folder in (REPO_ROOT, *REPO_ROOT.parents[:3])]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"the real mc_maze_small test file was not found (looked at {[str(c) for c in candidates]}). "
        f"Download sub-Jenkins_ses-small_desc-test_ecephys.nwb from DANDI:000140 "
        f"(`dandi download DANDI:000140`) and pass its path or set ${REAL_FILE_ENV}.")


def load_yardstick(path: str | Path | None = None) -> Yardstick:
    """Bin the real file with nlb_tools (a read-only copy is opened) and apply the fixed split."""
    from nlb_tools.make_tensors import make_stacked_array
    from nlb_tools.nwb_interface import NWBDataset

    from .data.maze_nwb import unit_areas

    source = find_real_file(path)
    with tempfile.TemporaryDirectory() as scratch:  # never open the shared original for writing
        copy = Path(scratch) / source.name
        shutil.copyfile(source, copy)
        dataset = NWBDataset(str(copy))
        dataset.resample(BIN_MS)
        window = dict(align_field="move_onset_time", align_range=WINDOW_MS, allow_nans=True)
        everything = np.ones(len(dataset.trial_info), dtype=bool)
        counts = make_stacked_array(dataset, ["spikes"], window, everything)["spikes"]
        unit_id = np.asarray(dataset.data["spikes"].columns, dtype=int)
        area_of = unit_areas(copy)  # from the unit ids: 1xxx = PMd, 2xxx = M1
    if not np.isfinite(counts).all():
        raise ValueError(f"{source}: a trial's window runs past the recording; the yardstick expects complete trials")
    area = np.array([area_of[u] for u in unit_id])
    trial_index = np.arange(len(counts))
    hidden = np.zeros(len(unit_id), dtype=bool)
    for name in ("PMd", "M1"):
        members = np.flatnonzero(area == name)
        members = members[np.argsort(unit_id[members])]
        hidden[members[1::4]] = True
    return Yardstick(counts=counts.astype(np.float32), unit_id=unit_id, area=area,
                     train_trials=trial_index[trial_index % 4 != 3], test_trials=trial_index[trial_index % 4 == 3],
                     input_units=np.flatnonzero(~hidden), hidden_units=np.flatnonzero(hidden))


def co_bps(yardstick: Yardstick, hidden_rates) -> float:
    """nlb_tools' bits per spike of predicted hidden-unit rates (test trials, T, 27) against the truth."""
    from nlb_tools.evaluation import bits_per_spike

    truth = yardstick.part("test", "hidden").astype(np.float64)
    hidden_rates = np.asarray(hidden_rates, dtype=np.float64)
    if hidden_rates.shape != truth.shape:
        raise ValueError(f"expected hidden-unit rates shaped {truth.shape} (test trials, bins, hidden units), "
                         f"got {hidden_rates.shape}")
    return float(bits_per_spike(hidden_rates, truth))


# ---------------------------------------------------------------- what is scored

def mean_rate_predictor(yardstick: Yardstick) -> np.ndarray:
    """The null model: each hidden unit's mean count per bin over the train trials (co-bps ~ 0)."""
    mean = yardstick.part("train", "hidden").mean(axis=(0, 1))
    return np.broadcast_to(mean, yardstick.part("test", "hidden").shape).copy()


def smoothing_predictor(yardstick: Yardstick, kernel_sd_ms: float = 50.0) -> np.ndarray:
    """NLB's smoothing baseline: smoothed input spikes -> Poisson GLM -> hidden-unit rates."""
    from .data import smoothing_glm

    return smoothing_glm(yardstick.part("train", "input"), yardstick.part("train", "hidden"),
                         yardstick.part("test", "input"), bin_ms=BIN_MS, kernel_sd_ms=kernel_sd_ms)


def stitch_predictor(yardstick: Yardstick, profile: str, seeds=(0,), **fit_kwargs) -> np.ndarray:
    """NDT1-stitch on the one session through the public API, hidden units as outputs only.

    With several ``seeds``, one model per seed and their rates averaged (a seed ensemble)."""
    from .api import fit_ndt1_stitch

    train = np.concatenate([yardstick.part("train", "input"), yardstick.part("train", "hidden")], axis=2)
    rates = [fit_ndt1_stitch([train], n_heldout=[len(yardstick.hidden_units)], profile=profile, seed=seed,
                             progress=False, **fit_kwargs).predict_rates(yardstick.part("test", "input"), session=0)
             for seed in seeds]
    return np.mean(rates, axis=0)[:, :, len(yardstick.input_units):]


def area_codes(yardstick: Yardstick) -> np.ndarray:
    """(107,) area code per unit in the models' order (input units, then hidden): 0 = PMd, 1 = M1."""
    order = np.concatenate([yardstick.input_units, yardstick.hidden_units])
    return (yardstick.area[order] == "M1").astype(np.int64)


def neurofmx_predictor(yardstick: Yardstick, profile: str, seed: int = 0, backbone: str = "ssm") -> np.ndarray:
    """Notebook 4B's NeuroFMX (SSM backbone, population aggregator) on the one session, in its
    small-data configuration (experiments.SMALL_DATA_CONFIG: the encoder (co-smoothing) head alone,
    as this file has no behaviour; tokens mean-pooled instead of read by Perceiver latents; dropout
    0.3; a small SSM), trained for the profile's ``nfmx_small_data_epochs`` at ``nfmx_small_data_lr``.
    The last 20% of the train trials choose the weights kept (the encoder's loss: fit_neurofmx) and,
    as fit_ndt1_stitch does, how much the log-rates are smoothed in time (api.choose_rate_smoothing,
    scored on the hidden units: the input units' counts were visible to the model).
    What the recipe went through on this row: docs/neurofmx_yardstick.md."""
    from dataclasses import replace

    import torch

    from .api import choose_rate_smoothing, smooth_log_rates
    from .models.neurofmx import MultimodalBatch, NeuroFMXConfig, set_baseline_rates
    from .models.neurofmx.experiments import SMALL_DATA_CONFIG, SMALL_DATA_SSM, build_model, fit_neurofmx, predict
    from .runtime import get_profile, global_random_state_kept

    recipe = get_profile(profile)
    # every epoch may be the best one: the learning rate decays to 0 by the last, where it usually is
    recipe = replace(recipe, nfmx_epochs=recipe.nfmx_small_data_epochs, nfmx_lr=recipe.nfmx_small_data_lr,
                     nfmx_patience=recipe.nfmx_small_data_epochs)
    n_in, n_out = len(yardstick.input_units), len(yardstick.input_units) + len(yardstick.hidden_units)
    config = NeuroFMXConfig(n_inputs=[n_in], n_outputs=[n_out], d_model=recipe.nfmx_d_model, n_latents=recipe.nfmx_latents,
                            **SMALL_DATA_CONFIG)

    def batch(trials: str, with_targets: bool = True) -> MultimodalBatch:
        inputs = torch.as_tensor(yardstick.part(trials, "input"))
        targets = torch.as_tensor(np.concatenate([yardstick.part(trials, "input"), yardstick.part(trials, "hidden")], axis=2))
        return MultimodalBatch(inputs, targets=targets if with_targets else None,
                               session=torch.zeros(len(inputs), dtype=torch.long))

    train = batch("train")
    n_fit = round(0.8 * len(train))
    with global_random_state_kept():
        model = build_model(config, backbone, train.spikes.shape[1] // config.patch_bins, seed, **SMALL_DATA_SSM)
        set_baseline_rates(model, 0, train.target_counts[:n_fit])
        fit_neurofmx(model, train[slice(0, n_fit)], train[slice(n_fit, None)], recipe, seed=seed)

    def hidden_log_rates(data: MultimodalBatch) -> np.ndarray:  # (trials, T, hidden units)
        return predict(model, data)["rates"].log().numpy()[:, :, n_in:]

    held_back = train[slice(n_fit, None)]
    width = choose_rate_smoothing([hidden_log_rates(held_back)], [held_back.target_counts.numpy()[:, :, n_in:]])
    return np.exp(smooth_log_rates(hidden_log_rates(batch("test", with_targets=False)), width))


def run_yardstick(profiles=("quick",), path: str | Path | None = None, seeds=(0,), mtm: bool = True,
                  neurofmx: bool = True) -> list[dict]:
    """Score the null, smoothing + GLM, NDT1-stitch (per profile and seed, and in the full profile
    the seeds' rates averaged), NDT1-stitch trained with MtM masking (first seed), the same two with
    their read-outs started at rate 1 instead of the units' mean rates (the recipe before), and
    NeuroFMX (per seed, and the seeds' rates averaged); one row per model."""
    yardstick = load_yardstick(path)
    rows = []

    def score(model: str, predict) -> np.ndarray:
        start = time.perf_counter()
        rates = predict()
        value = co_bps(yardstick, rates)
        rows.append({"model": model, "co-bps": round(value, 4), "seconds": round(time.perf_counter() - start, 1)})
        print(f"  {model:<34} co-bps {value:7.4f}   {rows[-1]['seconds']:7.1f} s", flush=True)
        return rates

    print(f"real mc_maze_small test file: {yardstick.counts.shape[0]} trials ({len(yardstick.train_trials)} train / "
          f"{len(yardstick.test_trials)} test), {BIN_MS} ms bins, {len(yardstick.input_units)} input / "
          f"{len(yardstick.hidden_units)} hidden units")
    score("mean rate (null)", lambda: mean_rate_predictor(yardstick))
    score("smoothing 50 ms + Poisson GLM", lambda: smoothing_predictor(yardstick))
    for profile in profiles:
        per_seed = [score(f"NDT1-stitch ({profile}, seed {seed})", lambda: stitch_predictor(yardstick, profile, (seed,)))
                    for seed in seeds]
        if len(seeds) > 1:  # what averaging a few seeds' rates buys on small data (no extra training)
            score(f"NDT1-stitch ({profile}, {len(seeds)} seeds averaged)", lambda: np.mean(per_seed, axis=0))
        if mtm:  # Notebook 4A's multi-task masking, its region schemes over the two arrays
            score(f"NDT1-stitch, MtM masking ({profile}, seed {seeds[0]})",
                  lambda: stitch_predictor(yardstick, profile, (seeds[0],), masking="mtm", unit_areas=[area_codes(yardstick)]))
        # the same two with the read-outs' default initialisation (about one spike per bin), the
        # recipe before fit_ndt1_stitch started them at the units' mean rates: what that start buys
        score(f"NDT1-stitch, read-outs from rate 1 ({profile}, seed {seeds[0]})",
              lambda: stitch_predictor(yardstick, profile, (seeds[0],), start_at_mean_rates=False))
        if mtm:
            score(f"NDT1-stitch, MtM, read-outs from rate 1 ({profile}, seed {seeds[0]})",
                  lambda: stitch_predictor(yardstick, profile, (seeds[0],), masking="mtm",
                                           unit_areas=[area_codes(yardstick)], start_at_mean_rates=False))
        if neurofmx:  # like NDT1-stitch: one row per seed, and with several seeds their rates averaged
            per_seed = [score(f"NeuroFMX, SSM ({profile}, seed {seed})", lambda: neurofmx_predictor(yardstick, profile, seed))
                        for seed in seeds]
            if len(seeds) > 1:
                score(f"NeuroFMX, SSM ({profile}, {len(seeds)} seeds averaged)", lambda: np.mean(per_seed, axis=0))
    return rows


# ---------------------------------------------------------------- is the stand-in as hard as this?

# How close the synthetic stand-in's statistics must be to the real file's (tests/test_yardstick.py,
# README.md): a factor for the median rate, absolute differences for the others.
STAND_IN_TOLERANCE = {"rate_hz_median": 1.3, "empty_bins": 0.02, "fano_100ms": 0.2, "psth_fraction": 0.02,
                      "modulation_depth": 0.3, "smoothing_co_bps": 0.03}


def load_stand_in_yardstick() -> Yardstick:
    """The synthetic stand-in's mc_maze_small test file (generated in a temporary folder), binned and
    split exactly as the real file, so the two can be compared number for number."""
    from .data import synthetic_maze
    from .data.maze_catalogue import dandi_paths, session_dir

    with tempfile.TemporaryDirectory() as scratch:
        folder = session_dir("mc_maze_small", synthetic=True, data_dir=scratch)
        synthetic_maze.generate_session("mc_maze_small", folder, *dandi_paths("mc_maze_small"))
        return load_yardstick(folder / dandi_paths("mc_maze_small")[1])


def hardness_statistics(data: Yardstick) -> dict[str, float]:
    """:func:`spiking_statistics` of all the counts, plus what the smoothing baseline scores on the split."""
    statistics = spiking_statistics(data.counts)
    statistics["smoothing_co_bps"] = co_bps(data, smoothing_predictor(data))
    return statistics


def stand_in_mismatches(real: dict, stand_in: dict) -> dict[str, tuple[float, float]]:
    """The statistics (name -> (real, stand-in)) on which the stand-in is outside STAND_IN_TOLERANCE."""
    out = {}
    for key, tolerance in STAND_IN_TOLERANCE.items():
        if key == "rate_hz_median":
            outside = max(stand_in[key] / real[key], real[key] / stand_in[key]) > tolerance
        else:
            outside = abs(stand_in[key] - real[key]) > tolerance
        if outside:
            out[key] = (real[key], stand_in[key])
    return out


def spiking_statistics(counts, bin_ms: float = BIN_MS) -> dict[str, float]:
    """The statistics that decide how hard co-smoothing is, for (trials, bins, units) counts.

    rate_hz_*: quantiles of the units' mean firing rates; empty_bins: fraction of zero counts;
    fano_100ms: median over units of the Fano factor of 100 ms counts across trials (per time
    window, then averaged); psth_fraction: share of each unit's variance of 50 ms-smoothed activity
    that the trial-averaged PSTH explains (signal vs trial-to-trial noise), median over units;
    modulation_depth: how strongly the units follow the task, the peak of each unit's trial-averaged
    PSTH (20 ms smoothing) over its mean rate, median over units firing above 1 Hz (a unit that
    fires at 3 Hz over the trial but 6 Hz around the reach has depth 2).
    """
    from scipy.ndimage import gaussian_filter1d

    counts = np.asarray(counts, dtype=np.float64)
    rates = counts.mean(axis=(0, 1)) * 1000.0 / bin_ms
    window = max(1, int(round(100 / bin_ms)))
    n_windows = counts.shape[1] // window
    summed = counts[:, : n_windows * window].reshape(len(counts), n_windows, window, -1).sum(axis=2)
    mean, var = summed.mean(axis=0), summed.var(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fano = np.where(mean > 0.1, var / mean, np.nan)  # too few spikes in a window: no estimate
    with warnings.catch_warnings():  # units silent in every window average to NaN and are skipped
        warnings.simplefilter("ignore", RuntimeWarning)
        fano_per_unit = np.nanmean(fano, axis=0)
    smoothed = gaussian_filter1d(counts, 50.0 / bin_ms, axis=1)
    psth = smoothed.mean(axis=0, keepdims=True)
    total = smoothed.var(axis=(0, 1))
    explained = np.broadcast_to(psth, smoothed.shape).var(axis=(0, 1))
    peak = gaussian_filter1d(counts.mean(axis=0), 20.0 / bin_ms, axis=0).max(axis=0) * 1000.0 / bin_ms
    firing = rates > 1.0
    return {
        "rate_hz_p10": float(np.percentile(rates, 10)), "rate_hz_median": float(np.median(rates)),
        "rate_hz_p90": float(np.percentile(rates, 90)), "empty_bins": float((counts == 0).mean()),
        "fano_100ms": float(np.nanmedian(fano_per_unit)),
        "psth_fraction": float(np.median(explained[total > 0] / total[total > 0])),
        "modulation_depth": float(np.median(peak[firing] / rates[firing])) if firing.any() else float("nan"),
    }
