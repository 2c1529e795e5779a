"""Unit tests of the package's building blocks: counts, masking, objectives, models, metrics."""
import math

import numpy as np
import pytest
import torch

from tutorial_utils import metrics
from tutorial_utils.batches import Batch
from tutorial_utils.data import as_counts, make_lorenz_config, make_lorenz_dataset
from tutorial_utils.masking import mask_time_bins
from tutorial_utils.models import NDT1, causal_attention_mask, sinusoidal_positional_encoding
from tutorial_utils.objectives import MaskedAutoencoding, masked_poisson_loss
from tutorial_utils.runtime import get_profile


# --- counts validation ------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 5)), "expected 3 dimensions"),
    (np.full((2, 3, 4), np.nan), "NaN"),
    (-np.ones((2, 3, 4)), "negative"),
    (np.full((2, 3, 4), 0.5), "whole numbers"),
    (np.zeros((0, 3, 4)), "non-empty"),
    (np.array([["a"]], dtype=object)[None], "numeric"),
])
def test_as_counts_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        as_counts(bad)


def test_as_counts_accepts_integers_and_checks_neurons():
    counts = np.arange(24).reshape(2, 3, 4)
    out = as_counts(counts)
    assert out.dtype == torch.float32 and torch.equal(out, torch.tensor(counts, dtype=torch.float32))
    with pytest.raises(ValueError, match="expected 5 neurons"):
        as_counts(counts, n_neurons=5)


# --- data -------------------------------------------------------------------------------------

def test_lfads_lorenz_configuration_is_the_benchmark_shape_and_sparse():
    lfads = make_lorenz_config("lfads")
    assert lfads.spikes.shape == (1560, 50, 29) and len(lfads.trials("train")) == 1248 and lfads.bin_ms == 10
    mean_rate_hz = lfads.spikes.mean() * 1000 / lfads.bin_ms
    assert 5 < mean_rate_hz < 9  # ~7 Hz, against ~27 Hz in the course's default
    assert (lfads.spikes == 0).mean() > 0.9
    assert make_lorenz_config("course", n_trials=10).spikes.shape == (10, 50, 64)
    with pytest.raises(ValueError, match="lfads"):
        make_lorenz_config("LFADS")


def test_lorenz_is_seeded_and_consistent():
    a, b = make_lorenz_dataset(20, seed=3), make_lorenz_dataset(20, seed=3)
    assert np.array_equal(a.spikes, b.spikes)
    assert a.spikes.shape == (20, 50, 64) and a.latents.shape == (20, 50, 3)
    assert not np.array_equal(a.spikes, make_lorenz_dataset(20, seed=4).spikes)
    expected_log_rates = a.latents @ a.readout + a.bias  # modulation 1.0
    np.testing.assert_allclose(np.log(a.rates), expected_log_rates, rtol=1e-4, atol=1e-4)
    assert sorted(set(a.split)) == ["test", "train", "val"]
    assert len(a.trials("train")) == 14


# --- masking ----------------------------------------------------------------------------------

def test_mask_time_bins_hides_exactly_the_ratio_and_zeros_all_neurons():
    spikes = torch.ones(8, 10, 3)
    masked, mask = mask_time_bins(spikes, 0.2, torch.Generator().manual_seed(0))
    assert mask.shape == (8, 10) and mask.dtype == torch.bool
    assert (mask.sum(1) == 2).all()
    assert (masked[mask] == 0).all() and (masked[~mask] == 1).all()
    assert torch.equal(spikes, torch.ones(8, 10, 3))  # input untouched
    again = mask_time_bins(spikes, 0.2, torch.Generator().manual_seed(0))[1]
    assert torch.equal(mask, again)
    with pytest.raises(ValueError, match="mask_ratio"):
        mask_time_bins(spikes, 1.5)


# --- objectives -------------------------------------------------------------------------------

def test_masked_poisson_loss_exact_value():
    log_rates = torch.tensor([[[0.0], [math.log(2.0)]]])  # rates 1 and 2
    spikes = torch.tensor([[[3.0], [1.0]]])
    # only bin 1 is masked: 2 - 1 * log 2
    loss = masked_poisson_loss(log_rates, spikes, torch.tensor([[False, True]]))
    assert loss.item() == pytest.approx(2 - math.log(2.0))
    both = masked_poisson_loss(log_rates, spikes, torch.tensor([[True, True]]))
    assert both.item() == pytest.approx(((1 - 0) + (2 - math.log(2.0))) / 2)


def test_masked_autoencoding_hides_the_scored_bins_from_the_model():
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen["input"] = x
            return torch.zeros_like(x)

    spikes = torch.ones(2, 10, 3)
    MaskedAutoencoding(0.3)(Spy(), Batch(spikes), torch.Generator().manual_seed(0))
    assert int((seen["input"].sum(-1) == 0).sum()) == 2 * 3


# --- models -----------------------------------------------------------------------------------

def test_positional_encoding_values():
    pe = sinusoidal_positional_encoding(4, 5)
    assert pe.shape == (4, 5)
    np.testing.assert_allclose(pe[0], [0, 1, 0, 1, 0], atol=1e-7)
    np.testing.assert_allclose(pe[2, 0], math.sin(2.0), atol=1e-6)
    np.testing.assert_allclose(pe[2, 3], math.cos(2 * 10000 ** (-2 / 5)), atol=1e-6)


def test_ndt1_shapes_and_causality():
    torch.manual_seed(0)
    model = NDT1(n_neurons=6, n_bins=12, dropout=0.0).eval()
    assert isinstance(model.read_in, torch.nn.Identity)  # d_model = N by default
    spikes = torch.poisson(torch.ones(3, 12, 6))
    assert model(spikes).shape == (3, 12, 6) and model.latents(spikes).shape == (3, 12, 6)
    changed = spikes.clone()
    changed[:, 8:] += 5  # change the future
    with torch.no_grad():
        causal_before, causal_after = model(spikes, causal=True), model(changed, causal=True)
        acausal_before, acausal_after = model(spikes), model(changed)
    torch.testing.assert_close(causal_before[:, :8], causal_after[:, :8])
    assert not torch.allclose(acausal_before[:, :8], acausal_after[:, :8])
    assert causal_attention_mask(3).tolist() == [[False, True, True], [False, False, True], [False, False, False]]
    with pytest.raises(ValueError, match="longer than"):
        model(torch.zeros(1, 13, 6))


def test_ndt1_wider_latents_use_a_linear_read_in():
    model = NDT1(n_neurons=6, n_bins=12, d_model=8)
    assert isinstance(model.read_in, torch.nn.Linear) and model.latents(torch.zeros(1, 12, 6)).shape == (1, 12, 8)


# --- metrics ----------------------------------------------------------------------------------

def test_bits_per_spike_is_zero_for_the_mean_and_positive_for_the_truth():
    rng = np.random.default_rng(0)
    rates = np.exp(rng.normal(size=(50, 20, 4)))
    spikes = rng.poisson(rates)
    mean = np.broadcast_to(spikes.mean(axis=(0, 1), keepdims=True), spikes.shape)
    assert metrics.bits_per_spike(mean, spikes) == pytest.approx(0.0, abs=1e-9)
    assert metrics.bits_per_spike(rates, spikes) > 0.3


def test_r2_and_linear_alignment():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(10, 20, 3))
    assert metrics.r2_score(target, target) == pytest.approx(1.0)
    assert metrics.r2_score(np.broadcast_to(target.mean(axis=(0, 1)), target.shape), target) == pytest.approx(0.0)
    mixing = rng.normal(size=(3, 7))
    source = target @ mixing + 2.0
    r2, aligned = metrics.latent_alignment_r2(source[:5], target[:5], source[5:], target[5:])
    assert r2 == pytest.approx(1.0, abs=1e-6) and aligned.shape == (5, 20, 3)


# --- runtime ----------------------------------------------------------------------------------

def test_profiles(monkeypatch):
    monkeypatch.setenv("TUTORIAL_PROFILE", "full")
    assert get_profile().name == "full"
    assert get_profile("quick", ndt1_epochs=3).ndt1_epochs == 3
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("huge")


def test_poisson_log_likelihood_matches_scipy_up_to_log_factorials():
    from scipy.special import gammaln
    from scipy.stats import poisson
    counts = np.array([[[0, 1], [3, 2]]])
    log_rates = np.log(np.array([[[0.5, 1.0], [2.0, 4.0]]]))
    exact = poisson.logpmf(counts, np.exp(log_rates)).sum()
    assert metrics.poisson_log_likelihood(log_rates, counts) == pytest.approx(exact + gammaln(counts + 1).sum())
    with pytest.raises(ValueError, match="same shape"):
        metrics.poisson_log_likelihood(log_rates, counts[..., :1])
