"""The multi-region stand-in (Notebook 4A): shapes, determinism, and that its ground truth holds."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from tutorial_utils.data import MultiRegionData, make_multi_region
from tutorial_utils.data import multi_region


@pytest.fixture(scope="module")
def data() -> MultiRegionData:
    return make_multi_region(n_trials=200, n_bins=80, seed=0)


def test_shapes_and_fields(data):
    B, T = 200, 80
    N = data.spikes.shape[2]
    assert data.spikes.shape == data.rates.shape == (B, T, N)
    assert data.spikes.dtype == data.rates.dtype == np.float32
    assert np.array_equal(data.spikes, np.round(data.spikes)) and data.spikes.min() >= 0
    assert len(data.region_names) >= 4 and data.regions.shape == (N,)
    assert set(np.unique(data.regions)) == set(range(len(data.region_names)))
    assert set(data.latents) == set(data.predictable) == set(data.region_names)
    for name, latent in data.latents.items():
        n_incoming = sum(target == name for _, target, _ in data.links)
        assert latent.shape == (B, T, multi_region.PRIVATE_DIM * (1 + n_incoming))
    assert data.behaviour.shape == (B, T, 2) and np.isfinite(data.behaviour).all()
    assert sorted(set(data.split)) == ["test", "train", "val"] and len(data.trials("train")) == 140
    assert "SYNTHETIC" in repr(data)
    batch = data.as_batch(data.trials("val"))
    assert batch.spikes.shape == (30, T, N) and batch.unit_areas.shape == (30, N)
    assert batch.behaviour.shape == (30, T, 2)


def test_wiring_says_who_is_predictable(data):
    """At least one region is alone (no links, independent dynamics) and at least two are linked."""
    assert not data.predictable["OLF"] and sum(data.predictable.values()) >= 3
    in_a_link = {r for s, t, _ in data.links for r in (s, t)}
    assert {r for r, ok in data.predictable.items() if ok} == in_a_link


def test_deterministic_by_seed():
    a, b = make_multi_region(20, 30, seed=3), make_multi_region(20, 30, seed=3)
    for field in ("spikes", "rates", "behaviour", "regions"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for name in a.latents:
        np.testing.assert_array_equal(a.latents[name], b.latents[name])
    assert not np.array_equal(a.spikes, make_multi_region(20, 30, seed=4).spikes)


def test_realistic_sparsity(data):
    """Like the mc_maze stand-in: most 10 ms bins empty, median unit rate a few to ~15 Hz."""
    empty = (data.spikes == 0).mean()
    median_hz = np.median(data.spikes.mean(axis=(0, 1))) * 1000 / data.bin_ms
    assert 0.8 < empty < 0.97 and 3 < median_hz < 20, (empty, median_hz)
    # The spikes are drawn from the rates: per-unit mean counts agree to Poisson error.
    mean_spikes, mean_rates = data.spikes.mean(axis=(0, 1)), data.rates.mean(axis=(0, 1))
    sem = np.sqrt(mean_rates / (data.spikes.shape[0] * data.spikes.shape[1]))
    assert np.abs(mean_spikes - mean_rates).max() < 6 * sem.max()


def test_rates_are_the_stated_function_of_the_latents(data):
    for index, name in enumerate(data.region_names):
        units = data.units_of(name)
        log_rate = data.bias[units] + data.latents[name].astype(np.float64) @ data.weights[name].T
        expected = np.exp(np.minimum(log_rate, np.log(200 * data.bin_ms / 1000)))
        np.testing.assert_allclose(data.rates[..., units], expected, rtol=1e-5)


def test_links_copy_the_source_at_the_stated_delay(data):
    """A target's received channel is an exact linear (rotation) image of the source's private
    state ``delay`` bins earlier, and of nothing at other delays."""
    for i, (source, target, delay) in enumerate(data.links):
        channel = 1 + [t for _, t, _ in data.links[:i]].count(target)  # 0 is the private state
        k = multi_region.PRIVATE_DIM
        received = data.latents[target][..., k * channel: k * (channel + 1)].astype(np.float64)
        sent = data.latents[source][..., :k].astype(np.float64)
        lead = 6
        y = received[:, lead:].reshape(-1, k)
        errors = []
        for shift in range(lead + 1):
            x = sent[:, lead - shift: sent.shape[1] - shift].reshape(-1, k)
            coef, *_ = np.linalg.lstsq(x, y, rcond=None)
            errors.append(np.abs(x @ coef - y).max())
        assert int(np.argmin(errors)) == delay and errors[delay] < 1e-4, (source, target, errors)


def _delayed_r2(data, source, target, delay, lead=10):
    """Ridge from the source's true log-rates at t - delay to the target's at t (fit on train
    trials, R^2 on test trials, pooled over target units)."""
    log_rates = np.log(data.rates.astype(np.float64))
    x = log_rates[:, lead - delay: data.rates.shape[1] - delay][..., data.units_of(source)]
    y = log_rates[:, lead:][..., data.units_of(target)]
    flat = lambda a, rows: a[rows].reshape(-1, a.shape[2])  # noqa: E731
    train, test = data.trials("train"), data.trials("test")
    model = Ridge(alpha=1.0).fit(flat(x, train), flat(y, train))
    return r2_score(flat(y, test), model.predict(flat(x, test)), multioutput="variance_weighted")


def test_linked_regions_predict_each_other_and_the_lone_one_is_unpredictable(data):
    for source, target, delay in data.links:
        scores = [_delayed_r2(data, source, target, d) for d in range(9)]
        assert scores[delay] > 0.45 and int(np.argmax(scores)) == delay, (source, target, np.round(scores, 2))
    alone = [r for r, ok in data.predictable.items() if not ok]
    for lone in alone:
        for other in data.region_names:
            if other != lone:
                best = max(_delayed_r2(data, other, lone, d) for d in range(9))
                assert best < 0.03, (other, lone, best)


def test_behaviour_is_a_readout_of_its_region(data):
    latent = data.latents[data.behaviour_region].reshape(-1, data.latents[data.behaviour_region].shape[2])
    coef, *_ = np.linalg.lstsq(latent, data.behaviour.reshape(-1, 2), rcond=None)
    np.testing.assert_allclose(latent @ coef, data.behaviour.reshape(-1, 2), atol=1e-2)
    lone = data.latents["OLF"].reshape(-1, multi_region.PRIVATE_DIM)
    coef, *_ = np.linalg.lstsq(lone, data.behaviour.reshape(-1, 2), rcond=None)
    assert r2_score(data.behaviour.reshape(-1, 2), lone @ coef) < 0.05


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_trials=0), "n_trials"),
    (dict(n_trials=2.5), "n_trials"),
    (dict(n_bins=1), "n_bins"),
    (dict(units_per_region=0), "units_per_region"),
    (dict(bin_ms=-10), "bin_ms"),
    (dict(rate_hz=(5, 1)), "rate_hz"),
    (dict(split_fractions=(0.5, 0.2, 0.2)), "split_fractions"),
    (dict(links=[("VIS", "NOPE", 1)]), "source, target, delay_bins"),
    (dict(links=[("VIS", "VIS", 1)]), "source, target, delay_bins"),
    (dict(n_bins=10, links=[("VIS", "THAL", 10)]), "delay_bins"),
    (dict(links=[("VIS", "THAL", 1), ("VIS", "THAL", 2)]), "repeated"),
])
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_multi_region(**{"n_trials": 4, "n_bins": 20, **kwargs})


def test_bad_region_or_split_is_named(data):
    with pytest.raises(ValueError, match="unknown region"):
        data.units_of("V2")
    with pytest.raises(ValueError, match="split"):
        data.trials("training")


def test_inter_region_structure_shows_in_the_spikes(data):
    """From spikes alone (a Poisson GLM on the other regions, multi_region.glm_from_other_regions),
    a linked region is predictable and the lone one is not: what MtM's inter-region score should find."""
    import warnings

    from nlb_tools.evaluation import bits_per_spike

    test = data.trials("test")
    scores = {}
    for region in ("MOT", "OLF"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rates = multi_region.glm_from_other_regions(data, region)
        scores[region] = bits_per_spike(rates, data.spikes[test][..., data.units_of(region)].astype(np.float64))
    assert scores["MOT"] > 0.1 and scores["OLF"] < 0.02, scores  # <= 0: no better than its mean rate (overfit)
