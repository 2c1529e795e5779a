"""The training loop and fit_ndt1 on real (small) runs."""
import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import tutorial_utils
from tutorial_utils import metrics
from tutorial_utils.batches import Batch
from tutorial_utils.data import make_lorenz_dataset
from tutorial_utils.models import NDT1
from tutorial_utils.objectives import MaskedAutoencoding
from tutorial_utils.runtime import get_profile
from tutorial_utils.training import evaluate_objective, predict_hidden_bins, train


def _run(seed):
    data = make_lorenz_dataset(60, seed=1)
    spikes = torch.as_tensor(data.spikes)
    torch.manual_seed(seed)
    model = NDT1(data.n_neurons, data.n_bins)
    return train(model, Batch(spikes[:40]), Batch(spikes[40:]), MaskedAutoencoding(), epochs=3, batch_size=16,
                 seed=seed, device="cpu", progress=False)


def test_same_seed_same_loss_history_on_cpu():
    first, second = _run(0), _run(0)
    assert first.train_loss == second.train_loss and first.val_loss == second.val_loss
    assert _run(1).train_loss != first.train_loss


def test_early_stopping_restores_the_best_weights():
    data = make_lorenz_dataset(40, seed=2)
    spikes = torch.as_tensor(data.spikes)
    model = NDT1(data.n_neurons, data.n_bins)
    # an absurd learning rate makes validation worse after the first epochs
    history = train(model, Batch(spikes[:30]), Batch(spikes[30:]), MaskedAutoencoding(), epochs=30, batch_size=8,
                    lr=0.5, patience=3, device="cpu", progress=False)
    assert len(history.val_loss) < 30  # stopped early
    restored = evaluate_objective(model, MaskedAutoencoding(), Batch(spikes[30:]), 8)["total"]
    assert restored == pytest.approx(history.best_val_loss, rel=1e-5)


@pytest.fixture(scope="module")
def lorenz_fit():
    data = make_lorenz_dataset(400, seed=5)
    train_idx, val_idx, test_idx = (data.trials(s) for s in ("train", "val", "test"))
    fitted = tutorial_utils.fit_ndt1(data.spikes[train_idx], data.spikes[val_idx],
                                     profile=get_profile("quick", ndt1_epochs=60), seed=0, progress=False)
    return data, test_idx, fitted


def test_fit_ndt1_learns_the_lorenz_rates(lorenz_fit):
    data, test_idx, fitted = lorenz_fit
    rates = fitted.predict_rates(data.spikes[test_idx])
    assert rates.shape == data.spikes[test_idx].shape
    assert metrics.r2_score(rates, data.rates[test_idx]) > 0.7
    assert metrics.bits_per_spike(rates, data.spikes[test_idx]) > 0.5 * metrics.bits_per_spike(
        data.rates[test_idx], data.spikes[test_idx])
    assert fitted.latents(data.spikes[test_idx]).shape == (len(test_idx), 50, 64)


def test_fit_ndt1_starts_the_read_out_at_the_neurons_mean_rates():
    """By default the read-out bias starts at each neuron's log mean count per bin (training then
    starts from the mean-rate model); one step later it is still there, far from the default
    initialisation's rates of about one spike per bin."""
    g = torch.Generator().manual_seed(0)
    rates = torch.tensor([0.02, 0.05, 0.1, 0.4, 0.0])  # sparse, one silent neuron (floored, finite)
    train_spikes = torch.poisson(rates.expand(30, 10, 5), generator=g)
    val_spikes = torch.poisson(rates.expand(6, 10, 5), generator=g)
    one_step = get_profile("quick", ndt1_epochs=1, batch_size=32)
    expected = train_spikes.mean((0, 1)).clamp(min=1e-3).log()
    fitted = tutorial_utils.fit_ndt1(train_spikes, val_spikes, profile=one_step, progress=False)
    torch.testing.assert_close(fitted.model.read_out.bias.detach(), expected, atol=0.05, rtol=0)
    from_rate_1 = tutorial_utils.fit_ndt1(train_spikes, val_spikes, profile=one_step, progress=False,
                                          start_at_mean_rates=False)
    assert (from_rate_1.model.read_out.bias.detach() - expected).abs().min() > 1


def test_fit_ndt1_rejects_bad_input(lorenz_fit):
    good = np.random.default_rng(0).poisson(1.0, size=(12, 10, 4))
    with pytest.raises(ValueError, match="3 dimensions"):
        tutorial_utils.fit_ndt1(good[0])
    with pytest.raises(ValueError, match="negative"):
        tutorial_utils.fit_ndt1(-good)
    with pytest.raises(ValueError, match="whole numbers"):
        tutorial_utils.fit_ndt1(good + 0.5)
    nan = good.astype(float)
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tutorial_utils.fit_ndt1(nan)
    with pytest.raises(ValueError, match="val_spikes: expected 4 neurons"):
        tutorial_utils.fit_ndt1(good, good[:, :, :3])
    data, test_idx, fitted = lorenz_fit
    with pytest.raises(ValueError, match="expected 64 neurons"):
        fitted.predict_rates(good)


def test_predict_hidden_bins_never_sees_the_scored_bin():
    class Echo(torch.nn.Module):  # predicts each bin's own input: perfect if it could see it
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return x

    spikes = torch.arange(1, 21, dtype=torch.float32).reshape(1, 10, 2)
    assert (predict_hidden_bins(Echo(), spikes) == 0).all()


class _Scalar(torch.nn.Module):
    """One number w, started at 5."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(5.0))


def _pull_to_the_mean(model, batch, generator=None):
    """"main" = (w - mean count)^2 is the score; an auxiliary 10 w^2 pulls w to 0, so the total is
    lowest near w = mean / 11 and the main loss at w = mean, passed on the way down from 5."""
    main = (model.w - batch.spikes.mean()) ** 2
    auxiliary = 10 * model.w ** 2
    return {"main": main, "auxiliary": auxiliary, "total": main + auxiliary}


def test_select_on_keeps_the_weights_best_on_the_named_loss():
    spikes = torch.ones(8, 5, 3)
    runs = {}
    for select_on in ("total", "main"):
        model = _Scalar()
        history = train(model, Batch(spikes), Batch(spikes), _pull_to_the_mean, epochs=40, batch_size=8, lr=0.3,
                        weight_decay=0.0, patience=None, select_on=select_on, device="cpu", progress=False)
        runs[select_on] = (model, history)
    model, history = runs["main"]
    assert history.best_epoch == int(np.argmin(history.val_parts["main"]))
    assert history.best_epoch != int(np.argmin(history.val_loss))  # the total would have kept other weights
    assert abs(model.w.item() - 1.0) < abs(runs["total"][0].w.item() - 1.0)
    assert history.val_parts["main"][history.best_epoch] == pytest.approx(float((model.w.detach() - 1) ** 2), rel=1e-5)
    with pytest.raises(ValueError, match="select_on"):
        train(_Scalar(), Batch(spikes), Batch(spikes), _pull_to_the_mean, epochs=1, select_on="velocity", progress=False)
class _VisibleSum(torch.nn.Module):
    """Predicts every bin as the sum of the trial's *visible* counts (unit 0): shows what was hidden."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, :, :1].sum(1, keepdim=True).expand(-1, x.shape[1], -1)


def test_predict_hidden_bins_averages_over_draws_of_the_hidden_folds():
    spikes = torch.tensor([1.0, 2, 4, 8, 16, 32, 64, 128, 256, 512]).reshape(1, 10, 1)  # each subset has its own sum
    total = spikes.sum()
    one = predict_hidden_bins(_VisibleSum(), spikes, n_folds=5)
    assert torch.equal(one[0, :, 0], total - spikes[0, :, 0] - spikes[0, (torch.arange(10) + 5) % 10, 0])
    assert torch.equal(predict_hidden_bins(_VisibleSum(), spikes, n_folds=5, n_draws=1), one)
    two = predict_hidden_bins(_VisibleSum(), spikes, n_folds=5, n_draws=2)
    assert torch.equal(two, predict_hidden_bins(_VisibleSum(), spikes, n_folds=5, n_draws=2))  # seeded
    # the second draw hid every bin together with exactly one other bin, in the other block of 5 bins
    # (one hidden bin per block, like the strided folds), but paired differently from t, t + 5
    hidden_with = (total - (2 * two - one)[0, :, 0]) - spikes[0, :, 0]  # the count of bin t's fold partner
    partner = [int(torch.nonzero(spikes[0, :, 0] == value)[0]) for value in hidden_with]
    assert sorted(partner) == list(range(10)) and all(partner[partner[t]] == t != partner[t] for t in range(10))
    assert all(partner[t] // 5 != t // 5 for t in range(10))
    assert partner != [(t + 5) % 10 for t in range(10)]
    # and in every draw each bin is predicted while hidden: a model echoing its input gets zeros
    echo = _VisibleSum()
    echo.forward = lambda x: x
    assert (predict_hidden_bins(echo, torch.arange(1.0, 21).reshape(1, 10, 2), n_draws=4) == 0).all()


@pytest.mark.parametrize("n_draws", [0, -1, 2.5, "4", True])
def test_predict_hidden_bins_rejects_bad_draw_counts(n_draws):
    with pytest.raises(ValueError, match="n_draws must be a whole number >= 1"):
        predict_hidden_bins(_VisibleSum(), torch.ones(1, 10, 1), n_draws=n_draws)


def test_fit_ndt1_averages_its_predictions_over_draws(lorenz_fit):
    data, test_idx, fitted = lorenz_fit
    spikes = data.spikes[test_idx][:5]
    rates = fitted.predict_rates(spikes)
    expected = predict_hidden_bins(fitted.model, torch.as_tensor(spikes), n_draws=tutorial_utils.api.INFERENCE_DRAWS)
    np.testing.assert_allclose(rates, expected.exp().numpy(), rtol=1e-6)
    assert tutorial_utils.api.INFERENCE_DRAWS > 1
    assert not np.allclose(rates, fitted.predict_rates(spikes, n_draws=1))


