"""Notebook 4A's experiment: the paper's Table 1 on our data (multi-task masking, MtM).

One architecture (NDT1-stitch on one session, every unit an input) trained seven ways: the
temporal baseline of Notebooks 1-2, each MtM scheme alone, MtM without prompts and MtM with
prompts. Every model is scored on every metric of mtm_metrics.py (the prompted one given the
matching prompt per metric) and on velocity decoding from its co-smoothed rates (a ridge decoder
of decoding.py). The notebook and ``bench nb4-mtm`` both call :func:`run_table1`.

    data = multi_region_dataset(profile)          # or mc_maze_dataset(profile)
    result = run_table1(data, profile)
    result.table()                                # models x metrics, bits/spike (+ velocity R^2)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from .mtm_metrics import METRIC_LABELS, METRICS, score_mtm
from .runtime import Profile, get_profile

# name -> fit_ndt1_stitch arguments. "Causal" etc. train with that one scheme only.
VARIANTS = {
    "temporal": {"masking": "temporal"},
    "causal": {"masking": ["causal"]},
    "neuron": {"masking": ["neuron"]},
    "intra-region": {"masking": ["intra_region"]},
    "inter-region": {"masking": ["inter_region"]},
    "MtM": {"masking": "mtm"},
    "MtM (prompted)": {"masking": "mtm", "prompts": True},
}


@dataclass
class MtmDataset:
    """One session for the experiment: counts (trials, T, N) with every unit's area code (N,)."""

    name: str
    train: np.ndarray
    test: np.ndarray
    areas: np.ndarray
    area_names: list
    train_behaviour: np.ndarray
    test_behaviour: np.ndarray
    bin_ms: float
    lag_bins: int = 0  # behaviour at t + lag is decoded from rates at t
    predictable: dict | None = None  # ground truth, where known: area name -> predictable from the others?
    links: list = field(default_factory=list)


def multi_region_dataset(profile: Profile | str | None = None, seed: int = 0) -> MtmDataset:
    """The simulated multi-region recording (data/multi_region.py) at the profile's size; test = its
    'test' trials, train = 'train' + 'val' (fit_ndt1_stitch holds out its own validation trials)."""
    from .data.multi_region import make_multi_region

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    data = make_multi_region(profile.mtm_trials, profile.mtm_bins, seed=seed, bin_ms=profile.mtm_bin_ms,
                             units_per_region=profile.mtm_units_per_region)
    train = np.concatenate([data.trials("train"), data.trials("val")])
    test = data.trials("test")
    return MtmDataset("multi-region stand-in", data.spikes[train], data.spikes[test], np.asarray(data.regions),
                      list(data.region_names), data.behaviour[train], data.behaviour[test], data.bin_ms,
                      predictable=dict(data.predictable), links=list(data.links))


def mc_maze_dataset(profile: Profile | str | None = None, **load_options) -> MtmDataset:
    """mc_maze (the stand-in unless real files are there): held-in and held-out units together, areas
    PMd = 0, M1 = 1; NLB's 'val' trials are the test trials. Hand velocity is decoded 80 ms ahead."""
    from .data import load_mc_maze

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    session = load_mc_maze("mc_maze_small", bin_ms=profile.mtm_maze_bin_ms, **load_options)
    spikes = np.concatenate([session.heldin_spikes, session.heldout_spikes], axis=2)
    names = ["PMd", "M1"]
    areas = np.array([names.index(a) for a in np.concatenate([session.heldin_area, session.heldout_area])])
    train, test = session.trials("train"), session.trials("val")
    label = "mc_maze stand-in" if session.is_synthetic else "mc_maze_small"
    return MtmDataset(label, spikes[train], spikes[test], areas, names, session.hand_vel[train],
                      session.hand_vel[test], session.bin_ms, lag_bins=max(0, round(80 / session.bin_ms)))


@dataclass
class Table1Result:
    """Scores of every variant on one dataset: ``scores[variant]`` (mtm_metrics.MtmScores),
    ``velocity_r2[variant]``, ``seconds[variant]`` (training + scoring)."""

    dataset: MtmDataset
    scores: dict = field(default_factory=dict)
    velocity_r2: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)

    def table(self, with_velocity: bool = True, with_seconds: bool = False):
        """A pandas DataFrame: one row per variant, one column per metric (bits/spike)."""
        import pandas as pd

        rows = {}
        for name, scores in self.scores.items():
            row = {METRIC_LABELS[m]: scores.table[m] for m in METRICS if m in scores.table}
            if with_velocity:
                row["velocity R²"] = self.velocity_r2.get(name, np.nan)
            if with_seconds:
                row["seconds"] = self.seconds.get(name, np.nan)
            rows[name] = row
        return pd.DataFrame.from_dict(rows, orient="index")

    def inter_region_by_area(self, variant: str = "MtM (prompted)") -> dict[str, float]:
        """Inter-region bits/spike of each area for one variant, by area name."""
        by_code = self.scores[variant].per_region("inter_region", self.dataset.areas)
        return {self.dataset.area_names[code]: value for code, value in by_code.items()}


def fit_variant(dataset: MtmDataset, variant: str, profile: Profile, seed: int = 0, progress: bool = False):
    """One model of the table, trained with ``VARIANTS[variant]`` and the profile's Notebook 4A recipe."""
    from .api import fit_ndt1_stitch

    recipe = replace(profile, stitch_batch_size=profile.mtm_batch_size, stitch_dropout=profile.mtm_dropout,
                     stitch_input_dropout=0.0, stitch_patience=profile.mtm_patience)
    return fit_ndt1_stitch([dataset.train], profile=recipe, seed=seed, d_model=profile.mtm_d_model,
                           epochs=profile.mtm_epochs, lr=profile.mtm_lr, progress=progress,
                           unit_areas=[dataset.areas], **VARIANTS[variant])


def velocity_r2(dataset: MtmDataset, model, prompts: bool) -> float:
    """R^2 of a ridge decoder of behaviour from the model's co-smoothed rates (fit on train, scored on test)."""
    from .decoding import RidgeDecoder

    rates = [score_mtm(model, spikes, dataset.areas, prompts=prompts, metrics=("co_smoothing",)).rates["co_smoothing"]
             for spikes in (dataset.train, dataset.test)]
    decoder = RidgeDecoder.fit(np.log(rates[0] + 1e-3), dataset.train_behaviour, dataset.lag_bins)
    return decoder.score(np.log(rates[1] + 1e-3), dataset.test_behaviour)


def run_table1(dataset: MtmDataset, profile: Profile | str | None = None, variants=None, *, seed: int = 0,
               progress: bool = False, keep_models: bool = False) -> Table1Result:
    """Train every variant (default: all of VARIANTS) on ``dataset`` and score it on every metric."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    variants = list(VARIANTS) if variants is None else list(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; expected names from {list(VARIANTS)}")
    result = Table1Result(dataset)
    for name in variants:
        start = time.perf_counter()
        fitted = fit_variant(dataset, name, profile, seed, progress)
        prompts = bool(VARIANTS[name].get("prompts"))
        trained_causally = "causal" in VARIANTS[name]["masking"] or VARIANTS[name]["masking"] == "mtm"
        result.scores[name] = score_mtm(fitted.model, dataset.test, dataset.areas, prompts=prompts,
                                        causal_forward=trained_causally)
        result.velocity_r2[name] = velocity_r2(dataset, fitted.model, prompts)
        result.seconds[name] = time.perf_counter() - start
        if keep_models:
            result.models[name] = fitted
    return result
