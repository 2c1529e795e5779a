"""The four MtM metrics (mtm_metrics.py) and per-neuron bits/spike, against direct computations."""
import math

import numpy as np
import pytest
import torch

from tutorial_utils.masking import SCHEME_NAMES
from tutorial_utils.metrics import bits_per_spike, bits_per_spike_per_neuron
from tutorial_utils.models import NDT1Stitch
from tutorial_utils.mtm_metrics import METRICS, evaluation_passes, score_mtm


def test_per_neuron_bits_per_spike_is_the_poisson_gain_over_each_neurons_mean():
    rng = np.random.default_rng(0)
    rates = rng.uniform(0.1, 2.0, (4, 5, 3))
    spikes = rng.poisson(rates).astype(float)
    spikes[:, :, 2] = 0  # a silent neuron has no score
    got = bits_per_spike_per_neuron(rates, spikes)
    for j in range(2):
        k, r = spikes[:, :, j].ravel(), rates[:, :, j].ravel()
        ll = np.sum(k * np.log(r) - r - [math.lgamma(x + 1) for x in k])
        mean = k.mean()
        null = np.sum(k * np.log(mean) - mean - [math.lgamma(x + 1) for x in k])
        assert got[j] == pytest.approx((ll - null) / (k.sum() * math.log(2)))
        assert got[j] == pytest.approx(bits_per_spike(rates[:, :, j:j + 1], spikes[:, :, j:j + 1]))  # nlb_tools'
    assert np.isnan(got[2])
    with pytest.raises(ValueError, match="same shape"):
        bits_per_spike_per_neuron(rates, spikes[:, :, :2])


def test_evaluation_passes_hide_and_score_what_each_metric_says():
    areas = np.array([0, 0, 0, 1, 1, 2])
    co = evaluation_passes("co_smoothing", 4, areas, n_folds=2)
    assert [p.scored[0].tolist() for p in co] == [[1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1]]
    assert all(np.array_equal(p.visible, ~p.scored) for p in co)
    (forward,) = evaluation_passes("forward_prediction", 10, areas, forward_fraction=0.2)
    assert forward.scored[:, 0].tolist() == [False] * 8 + [True] * 2 and np.array_equal(forward.visible, ~forward.scored)
    inter = evaluation_passes("inter_region", 4, areas)
    assert [p.scored[0].tolist() for p in inter] == [[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1]]
    assert all(np.array_equal(p.visible, ~p.scored) for p in inter)
    intra = evaluation_passes("intra_region", 4, areas, n_folds=2)  # area 2 has one unit: nothing to predict from
    assert [(p.scored[0].nonzero()[0].tolist(), p.visible[0].nonzero()[0].tolist()) for p in intra] == [
        ([0, 2], [1]), ([1], [0, 2]), ([3], [4]), ([4], [3])]
    with pytest.raises(ValueError, match="unknown metric"):
        evaluation_passes("co-smoothing", 4, areas)
    with pytest.raises(ValueError, match="at least 2 areas"):
        evaluation_passes("inter_region", 4, np.zeros(3, int))


def test_scores_equal_a_direct_computation_with_the_matching_prompts():
    torch.manual_seed(0)
    model = NDT1Stitch([6], 10, d_model=8, n_heads=2, dropout=0.0, n_prompts=len(SCHEME_NAMES)).eval()
    spikes = np.random.default_rng(1).poisson(1.0, (5, 10, 6)).astype(np.float32)
    areas = np.array([0, 0, 0, 1, 1, 1])
    scores = score_mtm(model, spikes, areas, prompts=True, causal_forward=True, n_folds=3, forward_fraction=0.2)
    assert set(scores.table) == set(METRICS)
    session = torch.zeros(5, dtype=torch.long)

    def rates(visible, prompt, causal=False):
        x = torch.tensor(spikes) * torch.tensor(visible, dtype=torch.float32)
        with torch.no_grad():
            return model(x, session, causal, torch.full((5,), SCHEME_NAMES.index(prompt))).exp().numpy()

    def direct(predicted, bins=slice(None)):
        return np.nanmean(bits_per_spike_per_neuron(predicted[:, bins], spikes[:, bins]))

    # inter-region: each area from the other, with the inter-region prompt
    predicted = np.zeros_like(spikes)
    for r in (0, 1):
        own = areas == r
        predicted[:, :, own] = rates(np.broadcast_to(~own, (10, 6)), "inter_region")[:, :, own]
    assert scores.table["inter_region"] == pytest.approx(direct(predicted), rel=1e-5)
    # forward prediction: the last 2 bins from the first 8, causal attention, the causal prompt
    visible = np.zeros((10, 6), bool)
    visible[:8] = True
    assert scores.table["forward_prediction"] == pytest.approx(
        direct(rates(visible, "causal", causal=True), slice(8, None)), rel=1e-5)
    # co-smoothing: units 0 and 3, 1 and 4, 2 and 5 hidden in turn, with the neuron prompt
    predicted = np.zeros_like(spikes)
    for f in range(3):
        group = np.arange(6) % 3 == f
        predicted[:, :, group] = rates(np.broadcast_to(~group, (10, 6)), "neuron")[:, :, group]
    assert scores.table["co_smoothing"] == pytest.approx(direct(predicted), rel=1e-5)
    assert scores.per_region("inter_region", areas).keys() == {0, 1}
    # without prompts the model is asked differently, so the numbers change
    assert score_mtm(model, spikes, areas, n_folds=3).table["co_smoothing"] != pytest.approx(scores.table["co_smoothing"])
    with pytest.raises(ValueError, match="len\\(areas\\)"):
        score_mtm(model, spikes, areas[:5])
