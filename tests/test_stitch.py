"""NDT1-stitch: session routing, padding, swapping, and fitting several sessions of different sizes."""
import numpy as np
import pytest
import torch

import tutorial_utils
from tutorial_utils import metrics
from tutorial_utils.batches import Batch
from tutorial_utils.exercises import nb2 as exercises
from tutorial_utils.data import make_lorenz_dataset
from tutorial_utils.data.sessions import stack_sessions
from tutorial_utils.models import NDT1Stitch, stitch_forward, swap_session_parts, trainable_only
from tutorial_utils.objectives import StitchedMaskedAutoencoding
from tutorial_utils.runtime import get_profile


# Lightly regularised, so 40 epochs suffice here (the default recipe is for small data and trains longer).
LIGHT_RECIPE = get_profile("quick", stitch_batch_size=16, stitch_d_model=64, stitch_dropout=0.1,
                           stitch_input_dropout=0.0)


def test_stack_sessions_pads_units_and_tags_sessions():
    spikes, session = stack_sessions([np.ones((2, 4, 3)), 2 * np.ones((1, 4, 5))])
    assert spikes.shape == (3, 4, 5) and session.tolist() == [0, 0, 1]
    assert (spikes[:2, :, 3:] == 0).all() and (spikes[2] == 2).all()
    with pytest.raises(ValueError, match="same number of time bins"):
        stack_sessions([np.ones((2, 4, 3)), np.ones((2, 5, 3))])


def test_each_trial_goes_through_its_own_session_layers():
    torch.manual_seed(0)
    model = NDT1Stitch([3, 5], n_bins=6, n_outputs=[4, 7], d_model=8, n_heads=2, dropout=0.0).eval()
    a, b = torch.poisson(torch.ones(2, 6, 3)), torch.poisson(torch.ones(3, 6, 5))
    spikes, session = stack_sessions([a, b])
    mixed = model(spikes, session)
    assert mixed.shape == (5, 6, 7)
    alone = model(torch.nn.functional.pad(a, (0, 2)), torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(mixed[:2], alone)  # batching with another session changes nothing
    assert (mixed[:2, :, 4:] == 0).all()  # padded outputs
    assert model.output_mask(session).sum(1).tolist() == [4, 4, 7, 7, 7]
    assert model.input_mask(session).sum(1).tolist() == [3, 3, 5, 5, 5]


def test_stitched_objective_scores_heldout_units_everywhere_and_never_padding():
    model = NDT1Stitch([2], n_bins=10, n_outputs=[3], d_model=4, n_heads=1)
    captured = {}

    def loss_fn(log_rates, targets, scored):
        captured["scored"] = scored
        return log_rates.sum() * 0

    inputs = torch.ones(1, 10, 2)
    batch = Batch(inputs, targets=torch.ones(1, 10, 3), session=torch.zeros(1, dtype=torch.long))
    StitchedMaskedAutoencoding(0.2, loss_fn=loss_fn)(model, batch)
    scored = captured["scored"][0]  # (T, N_out)
    assert scored[:, 2].all()  # the held-out unit, on every bin
    assert scored[:, 0].sum() == 2 and torch.equal(scored[:, 0], scored[:, 1])  # inputs: masked bins only


def test_input_dropout_hides_whole_units_while_training_only():
    model = NDT1Stitch([400], n_bins=10, n_outputs=[400], d_model=4, n_heads=1)
    seen = {}
    model.forward = lambda inputs, session: seen.setdefault("inputs", inputs) * 0  # record what the model is shown
    batch = Batch(torch.ones(3, 10, 400), session=torch.zeros(3, dtype=torch.long))
    objective = StitchedMaskedAutoencoding(0.2, input_dropout=0.25)
    objective(model.train(), batch, torch.Generator().manual_seed(0))
    shown = seen.pop("inputs")
    unit_on = shown.amax(dim=1) > 0  # (trials, units): a dropped unit is zero on every bin
    kept = unit_on.float().mean(1)  # each unit is dropped with probability 0.25, independently per trial
    assert ((kept > 0.68) & (kept < 0.82)).all() and not torch.equal(unit_on[0], unit_on[1])
    torch.testing.assert_close(shown.amax(), torch.tensor(1 / 0.75))  # the kept units are scaled up
    objective(model.eval(), batch, torch.Generator().manual_seed(0))
    assert (seen.pop("inputs").amax(dim=1) > 0).all()  # no unit dropout in eval mode (validation)
    with pytest.raises(ValueError, match="input_dropout"):
        StitchedMaskedAutoencoding(0.2, input_dropout=1.0)


def test_fit_ndt1_stitch_takes_its_recipe_from_the_profile():
    data = make_lorenz_dataset(40, n_bins=20, n_neurons=12, seed=3)
    profile = get_profile("quick", stitch_d_model=16, stitch_dropout=0.25, stitch_epochs=50, stitch_max_steps=12,
                          stitch_batch_size=8)
    fitted = tutorial_utils.fit_ndt1_stitch([data.spikes[:32]], [data.spikes[32:]], profile=profile, progress=False)
    assert fitted.model.read_in[0].out_features == 16 and fitted.model.core.dropout.p == 0.25
    assert len(fitted.history.train_loss) == 3  # 12 steps of 4 batches: the step budget
    explicit = tutorial_utils.fit_ndt1_stitch([data.spikes[:32]], [data.spikes[32:]], profile=profile, epochs=5,
                                              d_model=8, progress=False)
    assert len(explicit.history.train_loss) == 5  # an explicit length is not capped
    assert explicit.model.read_in[0].out_features == 8
    with pytest.raises(ValueError, match="d_model"):
        tutorial_utils.fit_ndt1_stitch([data.spikes], d_model=0)


def test_swap_and_freeze():
    torch.manual_seed(0)
    model = NDT1Stitch([3, 5], n_bins=4, d_model=8, n_heads=2)
    source_weight = model.read_in[1].weight.detach().clone()
    swap_session_parts(model, source=1, target=0)
    assert torch.equal(model.read_in[0].weight, source_weight[:, :3])
    assert torch.equal(model.session_embedding.weight[0], model.session_embedding.weight[1])
    trainable_only(model, 0)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"read_in.0.weight", "read_in.0.bias", "session_embedding.weight"}


def test_fit_ndt1_stitch_on_sessions_of_different_sizes():
    sessions = [make_lorenz_dataset(160, n_neurons=n, seed=20 + i) for i, n in enumerate([20, 35])]
    fitted = tutorial_utils.fit_ndt1_stitch([d.spikes[d.trials("train")] for d in sessions],
                                            [d.spikes[d.trials("val")] for d in sessions],
                                            profile=LIGHT_RECIPE, epochs=40,
                                            progress=False)
    for s, d in enumerate(sessions):
        rates = fitted.predict_rates(d.spikes[d.trials("test")], s)
        assert rates.shape == d.spikes[d.trials("test")].shape
        assert metrics.r2_score(rates, d.rates[d.trials("test")]) > 0.6
    with pytest.raises(ValueError, match="input units"):
        fitted.predict_rates(np.zeros((2, 50, 10)), 1)
    with pytest.raises(ValueError, match="n_heldout"):
        tutorial_utils.fit_ndt1_stitch([np.zeros((20, 5, 3))], n_heldout=[3])
    with pytest.raises(ValueError, match="val_sessions\\[0\\]: expected 3 neurons"):
        tutorial_utils.fit_ndt1_stitch([np.zeros((20, 5, 3))], [np.zeros((5, 5, 4))])


def _routing(read_in_of=None, read_out_of=None, embedding=True, input_columns=None, pad_value=0.0):
    """A learner's stitch_forward with one typical mistake (none with the defaults)."""
    def stitch_forward(model, spikes, session):
        read_in_ids = session if read_in_of is None else read_in_of(session)
        read_out_ids = session if read_out_of is None else read_out_of(session)
        tokens = torch.zeros(*spikes.shape[:2], model.session_embedding.embedding_dim, device=spikes.device)
        for s, layer in enumerate(model.read_in):
            columns = (input_columns or (lambda layer, spikes: spikes[:, :, :layer.in_features]))(layer, spikes)
            tokens = tokens + layer(columns) * (read_in_ids == s)[:, None, None]
        if embedding:
            tokens = tokens + model.session_embedding(session)[:, None, :]
        latents = model.core(tokens)
        width = max(layer.out_features for layer in model.read_out)
        log_rates = torch.full((*latents.shape[:2], width), pad_value, device=spikes.device)
        for s, layer in enumerate(model.read_out):
            chosen = (read_out_ids == s)[:, None, None]
            log_rates[..., :layer.out_features] = torch.where(chosen, layer(latents), log_rates[..., :layer.out_features])
        return log_rates
    return stitch_forward


def _last_columns(layer, spikes):  # the last n columns: includes the padding of narrower sessions
    return spikes[:, :, spikes.shape[2] - layer.in_features:]


def _cpu_zeros(model, spikes, session):  # right numbers, but a buffer created on the CPU
    log_rates = torch.zeros(*spikes.shape[:2], max(model.n_outputs))
    return log_rates + stitch_forward(model, spikes, session)


@pytest.mark.parametrize("mistake, message", [
    (_routing(read_in_of=lambda session: torch.zeros_like(session)), "every trial went through read_in[0]"),
    (_routing(read_in_of=lambda session: torch.full_like(session, int(session[0]))), "every trial went through read_in[1]"),
    (_routing(read_out_of=lambda session: torch.full_like(session, 2)), "every trial went through read_out[2]"),
    (_routing(embedding=False), "session embedding is missing"),
    (_routing(input_columns=_last_columns), "padding columns are not ignored"),
    (_routing(pad_value=-1.0), "padded output columns are not 0"),
    (_cpu_zeros, "would crash on a GPU"),
])
def test_routing_check_names_each_typical_mistake(mistake, message, capsys):
    assert exercises.check_stitch_forward(mistake) is stitch_forward
    out = capsys.readouterr().out
    assert "[x] Exercise 1 (stitch_forward)" in out and message in out, out


def test_routing_check_passes_the_reference_and_a_learner_version(capsys):
    assert exercises.check_stitch_forward(stitch_forward) is stitch_forward
    correct = _routing()
    assert exercises.check_stitch_forward(correct) is correct
    assert capsys.readouterr().out.count("[ok]") == 2


def test_stitch_forward_equals_the_model():
    torch.manual_seed(0)
    model = NDT1Stitch([3, 5], n_bins=6, n_outputs=[4, 7], d_model=8, n_heads=2).eval()
    spikes, session = stack_sessions([torch.poisson(torch.ones(2, 6, 3)), torch.poisson(torch.ones(3, 6, 5))])
    torch.testing.assert_close(stitch_forward(model, spikes, session), model(spikes, session), rtol=0, atol=0)


def test_notebook2_swap_check(capsys):
    assert exercises.check_swap_session_parts(swap_session_parts) is swap_session_parts

    def embedding_only(model, source, target):
        with torch.no_grad():
            model.session_embedding.weight[target] = model.session_embedding.weight[source]

    exercises.check_swap_session_parts(embedding_only)
    out = capsys.readouterr().out
    assert out.count("[ok]") == 1 and "read-in weight" in out


def test_read_outs_can_start_at_the_units_mean_rates():
    from tutorial_utils import fit_ndt1_stitch
    from tutorial_utils.models.stitch import start_at_mean_rates
    from tutorial_utils.runtime import get_profile

    g = torch.Generator().manual_seed(0)
    sessions = [torch.poisson(torch.full((30, 10, n), 0.05), generator=g) for n in (4, 3)]  # sparse: real-like
    model = NDT1Stitch([4, 3], 10, n_outputs=[4, 3], d_model=8)
    start_at_mean_rates(model, sessions)
    for read_out, counts in zip(model.read_out, sessions):
        torch.testing.assert_close(read_out.bias, counts.mean((0, 1)).clamp(min=1e-3).log())
    with pytest.raises(ValueError, match="units for a read-out of"):
        start_at_mean_rates(model, sessions[::-1])
    start_at_mean_rates(model, sessions[1:], session_ids=[1])  # one session only: the other keeps its biases
    torch.testing.assert_close(model.read_out[1].bias, sessions[1].mean((0, 1)).clamp(min=1e-3).log())
    # through the API: after one epoch the rates are near the data's mean with the option, far without
    one_epoch = get_profile("quick", stitch_epochs=1)
    mean_rate = {}
    for option in (False, True):
        fitted = fit_ndt1_stitch(sessions, profile=one_epoch, progress=False, start_at_mean_rates=option)
        mean_rate[option] = fitted.predict_rates(sessions[0], session=0).mean()
    data_mean = float(sessions[0].mean())
    assert 0.7 < mean_rate[True] / data_mean < 1.4 and mean_rate[False] / data_mean > 2, (mean_rate, data_mean)


def test_by_default_fits_start_read_outs_at_the_units_mean_rates():
    """fit_ndt1_stitch's default, and refit_read_in(read_out=True) for a new session, start each
    read-out bias at its units' log mean rate in the training trials (a tiny learning rate keeps
    the start visible after the one epoch)."""
    from tutorial_utils import fit_ndt1_stitch
    from tutorial_utils.runtime import get_profile

    g = torch.Generator().manual_seed(1)
    rates = torch.tensor([0.02, 0.05, 0.1, 0.4, 0.0])  # one silent unit: floored, stays finite
    train = [torch.poisson(rates.expand(30, 10, 5), generator=g)]
    val = [torch.poisson(rates.expand(6, 10, 5), generator=g)]
    one_epoch = get_profile("quick", stitch_epochs=1)
    fitted = fit_ndt1_stitch(train, val, n_heldout=[2], profile=one_epoch, lr=1e-9, progress=False)
    expected = train[0].mean((0, 1)).clamp(min=1e-3).log()
    torch.testing.assert_close(fitted.model.read_out[0].bias.detach(), expected, atol=1e-4, rtol=0)

    new_train = torch.poisson(rates.flip(0).expand(20, 10, 5), generator=g)
    adapted = fitted.add_session(3, 5, name="new")
    adapted.refit_read_in(1, new_train, new_train[:4], epochs=1, lr=1e-9, read_out=True, progress=False)
    torch.testing.assert_close(adapted.model.read_out[1].bias.detach(),
                               new_train.mean((0, 1)).clamp(min=1e-3).log(), atol=1e-4, rtol=0)
    torch.testing.assert_close(adapted.model.read_out[0].bias.detach(), expected, atol=1e-4, rtol=0)  # frozen


# --- the predicted rates are smoothed in time, as much as the validation trials say ---------------

def test_smooth_log_rates_spreads_a_bump_and_keeps_what_is_flat():
    from tutorial_utils.api import smooth_log_rates
    log_rates = np.zeros((2, 41, 3))
    log_rates[:, 20, 1] = 1.0
    assert smooth_log_rates(log_rates, 0.0) is log_rates
    smoothed = smooth_log_rates(log_rates, 2.0)
    assert smoothed[0, :, 1].sum() == pytest.approx(1.0)  # the bump is spread out, not lost
    assert smoothed[0, 20, 1] == pytest.approx(1 / (2 * np.sqrt(2 * np.pi)), rel=0.01)
    assert np.allclose(smoothed[:, :, [0, 2]], 0.0) and np.allclose(smooth_log_rates(log_rates + 3.0, 4.0)[:, :, 0], 3.0)


def _fitted_with_log_rates(log_rates):
    """A FittedStitch whose inferred (unsmoothed) log-rates are ``log_rates``, whatever the input."""
    fitted = tutorial_utils.api.FittedStitch(NDT1Stitch([2], 40, n_outputs=[4], d_model=8, n_heads=2),
                                             tutorial_utils.training.History())
    fitted._log_rates = lambda spikes, session: log_rates
    return fitted


def test_rate_smoothing_is_chosen_by_the_validation_likelihood():
    rng = np.random.default_rng(0)
    slow = np.log(2.0 + np.sin(np.linspace(0, 2 * np.pi, 40)))[None, :, None] * np.ones((300, 1, 4))
    counts = rng.poisson(np.exp(slow))
    noisy = _fitted_with_log_rates(slow + rng.normal(0, 0.5, slow.shape))  # a model that is noisy bin to bin
    assert noisy.choose_rate_smoothing([counts]) >= 2.0
    assert noisy.predict_rates(counts[:, :, :2], 0) == pytest.approx(
        np.exp(tutorial_utils.api.smooth_log_rates(noisy._log_rates(None, 0), noisy.rate_smoothing_bins)))
    steps = np.log(np.where(np.arange(40) % 2, 4.0, 0.25))[None, :, None] * np.ones((300, 1, 4))
    sharp = _fitted_with_log_rates(steps)  # the truth itself changes every bin: smoothing only hurts
    assert sharp.choose_rate_smoothing([rng.poisson(np.exp(steps))]) == 0.0
    with pytest.raises(ValueError, match="one count array per session"):
        sharp.choose_rate_smoothing([counts, counts])
    with pytest.raises(ValueError, match="widths"):
        sharp.choose_rate_smoothing([counts], widths=(-1.0,))


def test_fit_ndt1_stitch_chooses_a_smoothing_that_saving_and_new_sessions_keep(tmp_path):
    data = make_lorenz_dataset(60, n_neurons=12, seed=3)
    fitted = tutorial_utils.fit_ndt1_stitch([data.spikes[:50]], [data.spikes[50:]], profile=LIGHT_RECIPE, epochs=2,
                                            progress=False)
    assert fitted.rate_smoothing_bins in tutorial_utils.api.RATE_SMOOTHING_BINS
    fitted.rate_smoothing_bins = 3.0
    again = tutorial_utils.api.FittedStitch.load(fitted.save(tmp_path / "f.pt"))
    assert again.rate_smoothing_bins == 3.0
    assert np.allclose(again.predict_rates(data.spikes[50:], 0), fitted.predict_rates(data.spikes[50:], 0), atol=1e-5)
    assert fitted.add_session(5).rate_smoothing_bins == 3.0
    old = tmp_path / "old.pt"  # saved before checkpoints had fields: no smoothing
    state = torch.load(fitted.save(old), weights_only=False)
    del state["fields"]
    torch.save(state, old)
    assert tutorial_utils.api.FittedStitch.load(old).rate_smoothing_bins == 0.0


def test_choose_rate_smoothing_needs_matching_log_rates_and_counts():
    from tutorial_utils.api import choose_rate_smoothing
    with pytest.raises(ValueError, match="matching"):
        choose_rate_smoothing([np.zeros((3, 10, 2))], [np.zeros((3, 10, 4))])
    with pytest.raises(ValueError, match="matching"):
        choose_rate_smoothing([np.zeros((3, 10, 2))], [])
    assert choose_rate_smoothing([np.zeros((3, 10, 2))], [np.ones((3, 10, 2))], widths=(2.0,)) == 2.0
