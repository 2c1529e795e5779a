"""The four activity metrics of multi-task masking (MtM), in bits per spike averaged over neurons.

Each metric hides part of held-out trials, asks the model for what is hidden, and scores it:

* co-smoothing        a neuron from all the others (units in ``n_folds`` interleaved groups, one
                      group hidden per pass, for every bin)
* forward prediction  the last ``forward_fraction`` of the bins, from the bins before them
* intra-region        a neuron from the other neurons of its *own* area only (the rest hidden too)
* inter-region        a whole area from all the *other* areas

Every neuron is scored once per metric (on the bins that metric predicts) and the metric is the mean
of the per-neuron bits/spike (metrics.bits_per_spike_per_neuron). A prompted model is given the
prompt of the matching masking scheme ("mode switching"): neuron, causal, intra-region, inter-region.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .masking import SCHEME_NAMES
from .metrics import bits_per_spike_per_neuron
from .training import predict

METRICS = ("co_smoothing", "forward_prediction", "intra_region", "inter_region")
METRIC_LABELS = {"co_smoothing": "co-smoothing", "forward_prediction": "forward pred.",
                 "intra_region": "intra-region", "inter_region": "inter-region"}
METRIC_SCHEME = {"co_smoothing": "neuron", "forward_prediction": "causal", "intra_region": "intra_region",
                 "inter_region": "inter_region"}


@dataclass
class Pass:
    """One forward pass of an evaluation: what the model sees and what is scored, (T, N) bool each."""

    visible: np.ndarray
    scored: np.ndarray


def evaluation_passes(metric: str, n_bins: int, areas, n_folds: int = 5, forward_fraction: float = 0.1) -> list[Pass]:
    """The passes that make up ``metric`` for T = ``n_bins`` bins and units with area codes ``areas`` (N,).

    The scored entries of the passes never overlap, and together they cover every unit (on the
    last ``forward_fraction`` of the bins, at least one, for forward prediction)."""
    areas = np.asarray(areas)
    n_units = len(areas)
    all_bins = np.ones((n_bins, 1), dtype=bool)
    if metric == "co_smoothing":
        groups = [np.arange(n_units) % n_folds == f for f in range(min(n_folds, n_units))]
        return [Pass(all_bins & ~g, all_bins & g) for g in groups]
    if metric == "forward_prediction":
        if not 0 < forward_fraction < 1:
            raise ValueError(f"forward_fraction must be between 0 and 1, got {forward_fraction}")
        future = (np.arange(n_bins) >= n_bins - max(1, round(forward_fraction * n_bins)))[:, None]
        return [Pass(~future & np.ones((1, n_units), bool), future & np.ones((1, n_units), bool))]
    regions = [r for r in np.unique(areas) if r >= 0]
    if metric == "inter_region":
        if len(regions) < 2:
            raise ValueError(f"inter-region prediction needs units of at least 2 areas, got areas {regions}")
        return [Pass(all_bins & (areas != r), all_bins & (areas == r)) for r in regions]
    if metric == "intra_region":
        passes = []
        for r in regions:
            members = np.flatnonzero(areas == r)
            if len(members) < 2:
                continue  # a lone unit has no region-mates to be predicted from
            for f in range(min(n_folds, len(members))):
                target = np.zeros(n_units, bool)
                target[members[np.arange(len(members)) % n_folds == f]] = True
                passes.append(Pass(all_bins & (areas == r) & ~target, all_bins & target))
        return passes
    raise ValueError(f"unknown metric {metric!r}: expected one of {list(METRICS)}")


@dataclass
class MtmScores:
    """One model's scores: ``table[metric]`` the mean bits/spike over neurons, ``per_neuron[metric]``
    (N,) each neuron's, ``rates[metric]`` (trials, T, N) the predicted rates (NaN where not scored)."""

    table: dict = field(default_factory=dict)
    per_neuron: dict = field(default_factory=dict)
    rates: dict = field(default_factory=dict)

    def per_region(self, metric: str, areas) -> dict[int, float]:
        """Mean bits/spike over the neurons of each area code."""
        areas = np.asarray(areas)
        return {int(r): float(np.nanmean(self.per_neuron[metric][areas == r])) for r in np.unique(areas) if r >= 0}


def inter_region_bits_per_spike(predict_rates, spikes, areas) -> float:
    """Inter-region co-smoothing written out (Notebook 4A's exercise; :func:`score_mtm` does the same).

    ``predict_rates(visible)`` returns rates (trials, T, N) from a model shown only the units where
    ``visible`` (N,) is True. For each area: hide it, predict it from the others, keep its units'
    rates. Then bits/spike per neuron (metrics.bits_per_spike_per_neuron), averaged over neurons.
    """
    spikes, areas = np.asarray(spikes), np.asarray(areas)
    rates = np.zeros(spikes.shape)
    for region in np.unique(areas[areas >= 0]):
        own = areas == region
        rates[:, :, own] = np.asarray(predict_rates(~own))[:, :, own]
    return float(np.nanmean(bits_per_spike_per_neuron(rates[:, :, areas >= 0], spikes[:, :, areas >= 0])))


def predict_masked(model, spikes, visible: np.ndarray, *, session: int = 0, prompt: int | None = None,
                   causal: bool = False) -> np.ndarray:
    """Rates (trials, T, N_out) of a stitched model shown only the ``visible`` (T, N_in) entries."""
    spikes = torch.as_tensor(spikes, dtype=torch.float32)
    inputs = spikes * torch.as_tensor(visible[:, : spikes.shape[2]], dtype=torch.float32)
    ids = torch.full((len(spikes),), session, dtype=torch.long)
    options = {"causal": True} if causal else {}
    if prompt is not None:
        options["prompt"] = torch.tensor(prompt)
    return predict(model, inputs, ids, **options).exp().numpy()


def score_mtm(model, spikes, areas, *, prompts: bool = False, causal_forward: bool = False, session: int = 0,
              metrics=METRICS, n_folds: int = 5, forward_fraction: float = 0.1) -> MtmScores:
    """Score a stitched model (one session, every unit an input) on the MtM metrics.

    Args:
        spikes: (trials, T, N) held-out counts; areas: (N,) area code of each unit.
        prompts: give the model each metric's matching prompt token (METRIC_SCHEME).
        causal_forward: attend causally for forward prediction (for models trained with the causal scheme).
    """
    spikes = np.asarray(spikes, dtype=np.float32)
    areas = np.asarray(areas)
    if spikes.ndim != 3 or spikes.shape[2] != len(areas):
        raise ValueError(f"spikes must be (trials, T, N) with N = len(areas) = {len(areas)}, got {spikes.shape}")
    scores = MtmScores()
    for metric in metrics:
        prompt = SCHEME_NAMES.index(METRIC_SCHEME[metric]) if prompts else None
        causal = causal_forward and metric == "forward_prediction"
        rates = np.full(spikes.shape, np.nan, dtype=np.float32)
        for one in evaluation_passes(metric, spikes.shape[1], areas, n_folds, forward_fraction):
            predicted = predict_masked(model, spikes, one.visible, session=session, prompt=prompt, causal=causal)
            rates[:, one.scored] = predicted[:, :, : spikes.shape[2]][:, one.scored]
        scored = ~np.isnan(rates[0])  # (T, N): the same entries for every trial
        bins = scored.any(1)
        per_neuron = bits_per_spike_per_neuron(np.nan_to_num(rates[:, bins]), spikes[:, bins])
        per_neuron[~scored[bins].all(0)] = np.nan  # a unit no pass scored (e.g. alone in its area)
        scores.per_neuron[metric], scores.rates[metric] = per_neuron, rates
        scores.table[metric] = float(np.nanmean(per_neuron))
    return scores
