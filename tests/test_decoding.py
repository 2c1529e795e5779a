"""Decoding (Notebook 3): lag search, linear decoders, the Wiener filter and the causal transformer
decoder, on the synthetic MC_Maze stand-in and on tiny random data."""
from __future__ import annotations

import os
import warnings

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

import tutorial_utils  # noqa: E402
from tutorial_utils import decoding, plotting  # noqa: E402
from tutorial_utils.api import FittedNDT1, FittedStitch, load_checkpoint  # noqa: E402
from tutorial_utils.batches import Batch, as_batch  # noqa: E402
from tutorial_utils.data import load_mc_maze, synthetic_maze  # noqa: E402
from tutorial_utils.exercises import nb3 as exercises  # noqa: E402
from tutorial_utils.models import NDT1, NDT1Stitch, add_session, causal_attention_mask  # noqa: E402
from tutorial_utils.runtime import get_profile  # noqa: E402

PLANTED_LAG_MS = 100  # synthetic_maze.LAG_MS: the stand-in's hand follows its movement latents by this much
WIENER_FLOOR, SMOOTHED_RIDGE_FLOOR, CAUSAL_FLOOR = 0.55, 0.5, 0.7  # measured 0.65, 0.62, 0.85 (stand-in v3, 20 ms)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return os.environ.get("TUTORIAL_DATA_DIR") or str(tmp_path_factory.mktemp("decoding_cache"))


def _load(name, bin_ms, data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_mc_maze(name, bin_ms, data_dir=data_dir, synthetic=True)


@pytest.fixture(scope="module")
def small(data_dir):
    return _load("mc_maze_small", 20, data_dir)  # Notebook 3's bins


def _random_trials(n_trials=6, n_bins=24, n_units=5, d=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(1.0, (n_trials, n_bins, n_units)).astype(np.float32), rng.normal(size=(n_trials, n_bins, d))


def _tiny_decoder(n_units=5, n_bins=24, lag_bins=3, causal=True, seed=0):
    torch.manual_seed(seed)
    encoder = NDT1Stitch([n_units], n_bins, d_model=8, n_heads=2, dropout=0.0)
    return decoding.StitchDecoder.from_pretrained(encoder, 2, causal=causal, lag_bins=lag_bins).eval()


# --- lag --------------------------------------------------------------------------------------

def test_lag_search_recovers_the_planted_lag_within_one_bin(data_dir):
    # From one session's spikes the R^2-vs-lag curve is flat near its top (within 0.005 over
    # 40 ms), so, as Notebook 3 does, the curves of two sessions are averaged; the true rates
    # recover the planted lag exactly.
    curves = []
    for name in ("mc_maze_small", "mc_maze_medium"):
        session = _load(name, 10, data_dir)  # 10 ms bins: "one bin" is 10 ms
        train_trials = session.trials("train")
        curves.append(decoding.lag_search(decoding.smooth_counts(session.heldin_spikes[train_trials], 1.0),
                                          session.hand_vel[train_trials], bin_ms=10, max_lag_ms=300))
    curve = decoding.LagCurve.mean(curves)
    assert len(curve.lags) == 31 and curve.lags[0] == 0
    assert abs(curve.best_lag_ms - PLANTED_LAG_MS) <= 10, f"found {curve.best_lag_ms} ms"
    assert curve.r2.max() > curve.r2[0] + 0.1  # activity leads the hand: lag 0 is clearly worse
    truth = synthetic_maze.true_rates(session)["heldin_rates"][train_trials]
    exact = decoding.lag_search(truth, session.hand_vel[train_trials], bin_ms=10, max_lag_ms=300)
    assert exact.best_lag_ms == PLANTED_LAG_MS


def test_shift_by_lag_pairs_activity_with_later_behaviour():
    features, behaviour = np.arange(10)[None, :, None], 100 + np.arange(10)[None, :, None]
    x, y = decoding.shift_by_lag(features, behaviour, 3)
    assert x[0, :, 0].tolist() == list(range(7)) and y[0, :, 0].tolist() == list(range(103, 110))
    x0, y0 = decoding.shift_by_lag(features, behaviour, 0)
    assert x0.shape == features.shape and y0.shape == behaviour.shape


# --- causality --------------------------------------------------------------------------------

def _future_changes_past(predict, spikes, first_changed: int) -> float:
    """Largest change of the predictions for output bins < first_changed when later spikes change."""
    changed = spikes.copy()
    changed[:, first_changed:] = np.random.default_rng(1).poisson(4.0, changed[:, first_changed:].shape)
    before, after = predict(spikes), predict(changed)
    return float(np.abs(before[:, :first_changed] - after[:, :first_changed]).max()), float(
        np.abs(before - after).max())


def test_every_causal_decoder_ignores_the_future():
    spikes, behaviour = _random_trials()
    lag = 3
    wiener = decoding.WienerFilter.fit(spikes, behaviour, lag, history_bins=(1, 4))
    past, anywhere = _future_changes_past(wiener.predict, spikes, 12)
    assert past == 0 and anywhere > 0

    decoder = decoding.FittedDecoder(_tiny_decoder(lag_bins=lag), tutorial_utils.training.History())
    past, anywhere = _future_changes_past(decoder.predict_all_bins, spikes, 12)
    assert past < 1e-5 and anywhere > 1e-3

    encoder = _tiny_decoder().encoder
    for causal in (True, causal_attention_mask(spikes.shape[1])):
        latents = lambda x, causal=causal: decoding.stitch_latents(encoder, x, 0, causal=causal)  # noqa: E731
        frozen = decoding.RidgeDecoder.fit(latents(spikes), behaviour, lag)
        past, anywhere = _future_changes_past(lambda x: frozen.predict(latents(x)), spikes, 12)
        assert past < 1e-5 and anywhere > 1e-3
    acausal = decoding.RidgeDecoder.fit(decoding.stitch_latents(encoder, spikes, 0), behaviour, lag)
    past, _ = _future_changes_past(lambda x: acausal.predict(decoding.stitch_latents(encoder, x, 0)), spikes, 12)
    assert past > 1e-3  # the check can see leaks: the bidirectional model does use the future


def test_streaming_bin_by_bin_equals_the_batch_output():
    spikes, _ = _random_trials()
    decoder = decoding.FittedDecoder(_tiny_decoder(), tutorial_utils.training.History())
    streamed = decoder.stream(spikes[0])
    np.testing.assert_allclose(streamed, decoder.predict_all_bins(spikes[:1])[0], atol=1e-5)
    acausal = decoding.FittedDecoder(_tiny_decoder(causal=False), tutorial_utils.training.History())
    assert not np.allclose(acausal.stream(spikes[0]), acausal.predict_all_bins(spikes[:1])[0], atol=1e-4)


def test_streaming_runs_in_the_same_precision_as_the_batch(monkeypatch):
    # On a GPU the batch ran under bfloat16 autocast and the stream in float32: 2.5 mm/s apart.
    monkeypatch.setenv("TUTORIAL_AUTOCAST", "bfloat16")  # CPU autocast, as a GPU runs it
    spikes, _ = _random_trials()
    decoder = decoding.FittedDecoder(_tiny_decoder(), tutorial_utils.training.History())
    exact = decoder.stream(spikes[0], autocast_dtype="off")
    np.testing.assert_allclose(exact, decoder.predict_all_bins(spikes[:1], autocast_dtype="off")[0], atol=1e-5)
    reduced = decoder.stream(spikes[0])  # bfloat16 for both, so they agree to bfloat16 rounding
    batch = decoder.predict_all_bins(spikes[:1])[0]
    assert np.abs(reduced - batch).max() <= 0.05 * np.abs(batch).max() + 1e-3
    assert not np.array_equal(reduced, exact)  # the environment really switched precision


# --- R^2 floors on the stand-in ---------------------------------------------------------------

def test_decoders_clear_r2_floors_on_the_stand_in(small):
    # Floors a little under what the stand-in v3 (as sparse as the real recordings) gives
    train_trials, test_trials = small.trials("train"), small.trials("val")
    lag = PLANTED_LAG_MS // small.bin_ms
    velocity = small.hand_vel
    wiener = decoding.WienerFilter.fit(small.heldin_spikes[train_trials], velocity[train_trials], lag,
                                       history_bins=(4, 16))
    assert wiener.history_bins == 16  # longer history validates better here
    wiener_r2 = wiener.score(small.heldin_spikes[test_trials], velocity[test_trials])
    assert wiener_r2 > WIENER_FLOOR, wiener_r2

    smoothed = decoding.smooth_counts(small.heldin_spikes, 2.0)
    ridge = decoding.RidgeDecoder.fit(smoothed[train_trials], velocity[train_trials], lag)
    ridge_r2 = ridge.score(smoothed[test_trials], velocity[test_trials])
    assert ridge_r2 > SMOOTHED_RIDGE_FLOOR, ridge_r2

    fit, early_stop = train_trials[:60], train_trials[60:]
    all_spikes = small.all_spikes()
    fitted = decoding.fit_causal_decoder(all_spikes[fit], velocity[fit], all_spikes[early_stop], velocity[early_stop],
                                         lag_bins=lag, n_heldout=small.heldout_spikes.shape[2], epochs=30,
                                         lr=2e-3, progress=False)
    assert set(fitted.history.train_parts) == {"velocity", "poisson"}
    causal_r2 = fitted.score(small.heldin_spikes[test_trials], velocity[test_trials])
    assert causal_r2 > CAUSAL_FLOOR, causal_r2


# --- bad input --------------------------------------------------------------------------------

def test_bad_input_gives_clear_value_errors():
    spikes, behaviour = _random_trials()
    with pytest.raises(ValueError, match="same trials and bins"):
        decoding.RidgeDecoder.fit(spikes, behaviour[:, :-2], 2)
    with pytest.raises(ValueError, match="same trials and bins"):
        decoding.WienerFilter.fit(spikes, behaviour[:-1], 2)
    nan = behaviour.copy()
    nan[0, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        decoding.WienerFilter.fit(spikes, nan, 2)
    with pytest.raises(ValueError, match="NaN"):
        decoding.lag_search(spikes, nan, bin_ms=5, max_lag_ms=20)
    with pytest.raises(ValueError, match="shorter than the 24-bin trials"):
        decoding.RidgeDecoder.fit(spikes, behaviour, 24)
    with pytest.raises(ValueError, match="shorter than the 24-bin trials"):
        decoding.lag_search(spikes, behaviour, bin_ms=5, max_lag_ms=300)
    with pytest.raises(ValueError, match="time bins, d"):
        decoding.RidgeDecoder.fit(spikes, behaviour[..., 0], 2)
    with pytest.raises(ValueError, match="same trials and bins"):
        decoding.fit_causal_decoder(spikes, behaviour[:, 1:], spikes, behaviour, lag_bins=2, epochs=1, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        decoding.fit_causal_decoder(spikes, behaviour, spikes, nan, lag_bins=2, epochs=1, progress=False)
    with pytest.raises(ValueError, match="shorter than"):
        decoding.fit_causal_decoder(spikes, behaviour, spikes, behaviour, lag_bins=30, epochs=1, progress=False)
    with pytest.raises(ValueError, match="whole numbers"):
        decoding.WienerFilter.fit(spikes + 0.5, behaviour, 2)


# --- save and load ----------------------------------------------------------------------------

def test_save_and_load_give_identical_predictions(tmp_path):
    spikes, behaviour = _random_trials()
    fitted = decoding.fit_causal_decoder(spikes[:4], behaviour[:4], spikes[4:], behaviour[4:], lag_bins=3, epochs=2,
                                         d_model=8, progress=False)
    fitted.save(tmp_path / "decoder.pt")
    again = decoding.FittedDecoder.load(tmp_path / "decoder.pt")
    assert again.lag_bins == 3 and again.history.train_loss == fitted.history.train_loss
    np.testing.assert_array_equal(again.predict(spikes), fitted.predict(spikes))
    assert not np.allclose(decoding.FittedDecoder(_tiny_decoder(), fitted.history).predict(spikes),
                           fitted.predict(spikes))  # a fresh model differs: the weights really came back

    torch.manual_seed(0)
    stitch = FittedStitch(NDT1Stitch([5, 3], 24, n_outputs=[6, 3], d_model=8, n_heads=2,
                                     session_names=["a", "b"]).eval(), tutorial_utils.training.History())
    stitch.save(tmp_path / "stitch.pt")
    loaded = FittedStitch.load(tmp_path / "stitch.pt")
    assert loaded.model.n_outputs == [6, 3] and loaded.model.session_names == ["a", "b"]
    np.testing.assert_array_equal(loaded.predict_rates(spikes, 0), stitch.predict_rates(spikes, 0))

    ndt1 = FittedNDT1(NDT1(5, 24).eval(), tutorial_utils.training.History(), 5, 24)
    ndt1.save(tmp_path / "ndt1.pt")
    np.testing.assert_array_equal(FittedNDT1.load(tmp_path / "ndt1.pt").predict_rates(spikes),
                                  ndt1.predict_rates(spikes))
    with pytest.raises(ValueError, match="not an NDT1Stitch"):
        FittedStitch.load(tmp_path / "ndt1.pt")
    assert type(load_checkpoint(tmp_path / "decoder.pt")[0]).__name__ == "StitchDecoder"


def test_load_or_fit_trains_once_then_loads(tmp_path):
    calls = []

    def fit():
        calls.append(1)
        return FittedStitch(NDT1Stitch([4], 10, d_model=8, n_heads=2), tutorial_utils.training.History())

    path = tmp_path / "models" / "m.pt"
    first, loaded = tutorial_utils.api.load_or_fit(path, fit)
    assert not loaded and path.exists()
    second, loaded = tutorial_utils.api.load_or_fit(path, fit)
    assert loaded and len(calls) == 1
    torch.testing.assert_close(second.model.state_dict(), first.model.state_dict())
    name = tutorial_utils.api.model_cache_path("nb2", True, get_profile("quick")).name
    # a model trained on an older stand-in must not be loaded for regenerated data
    recipe = tutorial_utils.api.RECIPE_VERSION
    assert name.endswith(f"quick_synthetic-v{synthetic_maze.GENERATOR_VERSION}_recipe{recipe}.pt")
    assert tutorial_utils.api.model_cache_path("nb2", False, get_profile("quick")).name == f"nb2_quick_real_recipe{recipe}.pt"


def test_add_session_keeps_the_trained_weights():
    torch.manual_seed(0)
    model = NDT1Stitch([4], 10, n_outputs=[5], d_model=8, n_heads=2)
    bigger = add_session(model, 3, 6, name="new")
    assert bigger.n_inputs == [4, 3] and bigger.n_outputs == [5, 6] and bigger.session_names[-1] == "new"
    torch.testing.assert_close(bigger.core.state_dict(), model.core.state_dict())
    torch.testing.assert_close(bigger.read_in[0].weight, model.read_in[0].weight)
    torch.testing.assert_close(bigger.session_embedding.weight[0], model.session_embedding.weight[0])


# --- devices and mixed precision --------------------------------------------------------------

def test_decoding_objective_trains_under_bfloat16_autocast():
    spikes, behaviour = _random_trials()
    model = _tiny_decoder().train()
    batch = Batch(torch.as_tensor(spikes), session=torch.zeros(6, dtype=torch.long),
                  behaviour=torch.as_tensor(behaviour, dtype=torch.float32))
    objective = decoding.DecodingObjective(lag_bins=3, poisson_weight=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.head.weight.detach().clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = objective(model, batch, torch.Generator().manual_seed(0))
    assert set(losses) == {"velocity", "poisson", "total"}
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in losses.values())
    losses["total"].backward()
    optimizer.step()
    assert not torch.equal(model.head.weight, before)


def test_meta_device_forward():
    model = _tiny_decoder().to("meta")
    spikes = torch.zeros(2, 24, 5, device="meta")
    session = torch.zeros(2, dtype=torch.long, device="meta")
    assert model(spikes, session).shape == (2, 24, 2)
    batch = Batch(spikes, session=session, behaviour=torch.zeros(2, 24, 2, device="meta"))
    losses = decoding.DecodingObjective(3, poisson_weight=0.5)(model, batch)
    assert losses["total"].device.type == "meta"
    assert decoding.history_design_matrix(spikes, 4).device.type == "meta"


# --- named batches and losses -----------------------------------------------------------------

def test_batches_are_named_and_sliced_together():
    spikes, behaviour = _random_trials()
    batch = Batch(torch.as_tensor(spikes), session=torch.arange(6), behaviour=torch.as_tensor(behaviour))
    part = batch[torch.tensor([4, 1])]
    assert len(part) == 2 and part.session.tolist() == [4, 1]
    torch.testing.assert_close(part.behaviour, torch.as_tensor(behaviour)[[4, 1]])
    assert part.targets is None and torch.equal(part.target_counts, part.spikes)
    with pytest.raises(ValueError, match="one entry per trial"):
        Batch(torch.as_tensor(spikes), session=torch.arange(5))
    with pytest.raises(TypeError, match="named"):
        as_batch((spikes,))


def test_training_history_records_each_named_loss():
    spikes, behaviour = _random_trials()
    fitted = decoding.fit_causal_decoder(spikes[:4], behaviour[:4], spikes[4:], behaviour[4:], lag_bins=2,
                                         epochs=3, d_model=8, patience=None, progress=False)
    history = fitted.history
    assert set(history.train_parts) == set(history.val_parts) == {"velocity", "poisson"}
    assert all(len(v) == 3 for v in [*history.train_parts.values(), *history.val_parts.values()])
    # the total is velocity + 0.5 * poisson, epoch by epoch, on validation (no dropout noise there)
    np.testing.assert_allclose(history.val_loss, np.add(history.val_parts["velocity"],
                                                        0.5 * np.array(history.val_parts["poisson"])), rtol=1e-5)
    assert len(plotting.plot_loss_history(history).axes) == 3


# --- exercises --------------------------------------------------------------------------------

def test_notebook3_exercise_checks(capsys):
    assert exercises.check_shift_by_lag(decoding.shift_by_lag) is decoding.shift_by_lag
    assert exercises.check_causal_attention_mask(causal_attention_mask) is causal_attention_mask
    assert exercises.check_history_design_matrix(decoding.history_design_matrix) is decoding.history_design_matrix
    assert capsys.readouterr().out.count("[ok]") == 3

    def wrong_way(features, behaviour, lag):
        return features[:, lag:], behaviour[:, : behaviour.shape[1] - lag]

    def minus_zero(features, behaviour, lag):
        return features[:, :-lag], behaviour[:, lag:]

    def blocks_the_diagonal(n_bins, device=None):
        return torch.triu(torch.ones(n_bins, n_bins, dtype=torch.bool, device=device))

    def made_on_the_cpu(n_bins, device=None):
        return torch.triu(torch.ones(n_bins, n_bins, dtype=torch.bool), diagonal=1)

    def wraps_around(spikes, k):
        return torch.cat([torch.roll(spikes, j, dims=1) for j in range(k)], dim=2)

    def zeros_on_the_cpu(spikes, k):
        padded = torch.cat([torch.zeros(spikes.shape[0], k - 1, spikes.shape[2]), spikes], dim=1)
        return torch.cat([padded[:, k - 1 - j: k - 1 - j + spikes.shape[1]] for j in range(k)], dim=2)

    for check, fn, reference in [(exercises.check_shift_by_lag, wrong_way, decoding.shift_by_lag),
                                 (exercises.check_shift_by_lag, minus_zero, decoding.shift_by_lag),
                                 (exercises.check_causal_attention_mask, blocks_the_diagonal, causal_attention_mask),
                                 (exercises.check_causal_attention_mask, made_on_the_cpu, causal_attention_mask),
                                 (exercises.check_history_design_matrix, wraps_around, decoding.history_design_matrix),
                                 (exercises.check_history_design_matrix, zeros_on_the_cpu,
                                  decoding.history_design_matrix)]:
        assert check(fn) is reference
    out = capsys.readouterr().out
    assert out.count("[x]") == 6 and out.count("continues with the reference") == 6
    for message in ("wrong way", "lag of 0", "diagonal=1", "on the `device`", "wraps", "input's device"):
        assert message in out, message
