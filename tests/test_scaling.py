"""Notebook 4C's experiments (scaling.py): the few-shot split, adaptation with the core frozen,
well-formed curves, and clear errors. Tiny sessions and a few epochs: this checks the machinery,
not the numbers (those are in ``python -m tutorial_utils.bench scaling``)."""
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tutorial_utils import api as scaling_api, scaling
from tutorial_utils.runtime import get_profile

TINY = get_profile("quick", scaling_epochs=2, scaling_max_steps=20, scaling_scratch_steps=4, scaling_adapt_steps=4, scaling_seeds=1,
                   scaling_session_counts=(1, 2), scaling_shots=(4, None), scaling_eval_trials=6,
                   stitch_d_model=8, stitch_patience=5)


def tiny_sessions(n_sessions: int, n_trials: int = 20, n_bins: int = 10, seed: int = 0) -> list:
    """Poisson sessions driven by one shared 2-d latent (different units per session); spikes[t, 0, 0]
    of trial t is forced to t % 5, so a test can tell which trials a model was given."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (n_sessions, n_trials, 1))
    time = np.linspace(0, 2 * np.pi, n_bins)[None, :]
    sessions = []
    for s in range(n_sessions):
        latent = np.stack([np.sin(time + phase[s]), np.cos(time + phase[s])], axis=-1)  # (trials, T, 2)
        weights = rng.normal(0, 1, (2, 6 + s))
        spikes = rng.poisson(np.exp(latent @ weights)).astype(np.float32)
        sessions.append(SimpleNamespace(spikes=spikes, behaviour=latent.astype(np.float32), name=f"s{s}"))
    return sessions


def test_few_shot_split_uses_exactly_k_trials_and_never_the_evaluation_trials():
    for k in (2, 5, 10, 14):
        split = scaling.few_shot_split(20, k, n_eval=6, seed=3)
        assert len(split.adapt) == k and len(set(split.adapt)) == k
        assert len(split.stop) >= 1 and len(split.fit) == k - len(split.stop)
        assert set(split.adapt).isdisjoint(split.evaluate)
        assert split.evaluate.tolist() == list(range(14, 20))  # the same scored trials for every k
    assert len(scaling.few_shot_split(20, None, n_eval=6).adapt) == 14
    small, large = scaling.few_shot_split(20, 5, 6, seed=1), scaling.few_shot_split(20, 10, 6, seed=1)
    assert set(small.adapt) <= set(large.adapt)  # more shots add trials, they do not swap them


@pytest.mark.parametrize("k, n_eval, match", [(15, 6, "k=15"), (1, 6, "k=1"), (0, 6, "k=0"), (2.5, 6, "k=2.5"),
                                              (5, 0, "n_eval=0"), (5, 19, "n_eval=19")])
def test_few_shot_split_rejects_impossible_requests(k, n_eval, match):
    with pytest.raises(ValueError, match=match):
        scaling.few_shot_split(20, k, n_eval)


def test_adaptation_keeps_the_core_frozen_and_sees_only_the_adaptation_trials(monkeypatch):
    sessions = tiny_sessions(2)
    core = scaling.pretrain(sessions[:1], profile=TINY)
    before = {k: v.clone() for k, v in core.model.state_dict().items()}
    seen = []
    original = scaling.FittedStitch.refit_read_in

    def spy(self, session, train_spikes, val_spikes, **kwargs):
        seen.extend(np.asarray(train_spikes)[:, 0, 0].tolist() + np.asarray(val_spikes)[:, 0, 0].tolist())
        return original(self, session, train_spikes, val_spikes, **kwargs)

    monkeypatch.setattr(scaling.FittedStitch, "refit_read_in", spy)
    read_out_calls = []
    original_read_out = scaling.FittedStitch.fit_read_out

    def read_out_spy(self, session, train_spikes, val_spikes, **kwargs):
        read_out_calls.append((np.asarray(train_spikes)[:, 0, 0].tolist() + np.asarray(val_spikes)[:, 0, 0].tolist(),
                               kwargs))
        return original_read_out(self, session, train_spikes, val_spikes, **kwargs)

    monkeypatch.setattr(scaling.FittedStitch, "fit_read_out", read_out_spy)
    held = sessions[1].spikes.copy()
    held[:, 0, 0] = np.arange(len(held))  # the trial's own index, to see which trials were used
    split = scaling.few_shot_split(len(held), 5, n_eval=6, seed=0)
    adapted, index = scaling.adapt(core, held, split, n_heldout=2, profile=TINY)
    assert sorted(seen) == sorted(split.adapt.tolist())  # exactly the k trials, none scored later
    (read_out_trials, read_out_kwargs), = read_out_calls  # the held-out units' GLMs: the same trials
    assert sorted(read_out_trials) == sorted(split.adapt.tolist())
    assert read_out_kwargs["units"].tolist() == list(range(held.shape[2] - 2, held.shape[2]))
    after = adapted.model.state_dict()
    for name, value in before.items():  # core, old read-ins / read-outs: unchanged (the new session's are extra)
        if not name.startswith("session_embedding"):
            torch.testing.assert_close(after[name], value, rtol=0, atol=0, msg=f"{name} changed")
    assert index == 1 and adapted.model.n_inputs[index] == held.shape[2] - 2
    for name, value in core.model.state_dict().items():  # and the pretrained model is left as it was
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_from_scratch_sees_only_the_adaptation_trials_and_gets_fit_kwargs(monkeypatch):
    calls = []
    monkeypatch.setattr(scaling, "fit_ndt1_stitch", lambda train, val, **kwargs: calls.append((train, val, kwargs)))
    held = np.tile(np.arange(20, dtype=np.float32)[:, None, None], (1, 10, 6))  # every count = its trial index
    split = scaling.few_shot_split(20, 10, n_eval=6, seed=0)
    scaling.from_scratch(held, split, 2, profile=TINY, masking="mtm")
    (train,), (val,) = calls[0][:2]
    assert sorted(train[:, 0, 0].tolist() + val[:, 0, 0].tolist()) == sorted(split.adapt.tolist())
    assert calls[0][2]["masking"] == "mtm" and calls[0][2]["n_heldout"] == [2]


def test_scaling_and_few_shot_curves_are_well_formed():
    sessions = tiny_sessions(3)
    result = scaling.scaling_experiment(sessions[:2], sessions[2], profile=TINY, seeds=[0, 1])
    curve = result.curve
    assert curve.x == [1, 2] and curve.seeds == [0, 1]
    for metric in ("co-bps", "velocity R2"):
        assert curve.scores[metric].shape == (2, 2) and np.isfinite(curve.scores[metric]).all()
        assert curve.mean(metric).shape == (2,) and (curve.sem(metric) >= 0).all()
    shots = scaling.few_shot_experiment(sessions[:2], sessions[2], profile=TINY)
    assert shots.pretrained.x == shots.scratch.x == [4, 14] and shots.n_pretraining_sessions == 2
    for curve in (shots.pretrained, shots.scratch):
        assert curve.scores["co-bps"].shape == (2, 1) and np.isfinite(curve.scores["co-bps"]).all()


def test_pretraining_passes_fit_kwargs_through(monkeypatch):
    calls = []
    monkeypatch.setattr(scaling, "fit_ndt1_stitch", lambda train, **kwargs: calls.append(kwargs))
    scaling.pretrain(tiny_sessions(2), profile=TINY, masking="mtm", seed=3)
    assert calls[0]["masking"] == "mtm" and calls[0]["seed"] == 3 and len(calls[0]["n_heldout"]) == 2
    assert calls[0]["profile"].stitch_epochs == TINY.scaling_epochs


def test_bad_inputs_say_what_was_expected(monkeypatch):
    sessions = tiny_sessions(2)
    trained = []
    monkeypatch.setattr(scaling, "fit_ndt1_stitch", lambda *args, **kwargs: trained.append(1))
    with pytest.raises(ValueError, match="non-empty list of sessions"):
        scaling.scaling_experiment([], sessions[1], profile=TINY)
    with pytest.raises(ValueError, match="non-empty list of sessions"):
        scaling.few_shot_experiment([], sessions[1], profile=TINY)
    with pytest.raises(ValueError, match="session_counts"):
        scaling.scaling_experiment(sessions[:1], sessions[1], session_counts=[1, 2], profile=TINY)
    with pytest.raises(ValueError, match="k=30"):
        scaling.few_shot_experiment(sessions[:1], sessions[1], shots=[5, 30], profile=TINY)
    assert not trained  # every error comes before any training
    with pytest.raises(ValueError, match=r"\.spikes"):
        scaling.pretrain([np.zeros((4, 10, 3))], profile=TINY)
    with pytest.raises(ValueError, match="heldout_fraction"):
        scaling.n_heldout_units(10, 1.5)


# ---------------------------------------------------------------- the notebook's exercise

def _leaky(n_trials, k, n_eval, seed):  # draws adaptation trials from all trials
    order = np.random.default_rng(seed).permutation(n_trials)
    return scaling.FewShotSplit(fit=order[:k - 1], stop=order[k - 1:k], evaluate=np.arange(n_trials - n_eval, n_trials))


def _moving_eval(n_trials, k, n_eval, seed):  # evaluation trials = whatever the k adaptation trials left
    order = np.random.default_rng(seed).permutation(n_trials)
    return scaling.FewShotSplit(fit=order[:k - 1], stop=order[k - 1:k], evaluate=order[k:k + n_eval])


def _not_nested(n_trials, k, n_eval, seed):  # a fresh draw for every k
    order = np.random.default_rng(seed + 7 * k).permutation(n_trials - n_eval)
    return scaling.FewShotSplit(fit=order[:k - 1], stop=order[k - 1:k], evaluate=np.arange(n_trials - n_eval, n_trials))


def _clipped(n_trials, k, n_eval, seed):  # silently returns fewer trials than asked
    return scaling.few_shot_split(n_trials, min(k, n_trials - n_eval), n_eval, seed)


@pytest.mark.parametrize("mistake, message", [(_leaky, "a leak"), (_moving_eval, "change with k"),
                                              (_not_nested, "not among the 10"), (_clipped, "raise a ValueError")])
def test_few_shot_split_exercise_names_the_mistake(mistake, message, capsys):
    from tutorial_utils.exercises import nb4c

    assert nb4c.check_few_shot_split(mistake) is scaling.few_shot_split  # falls back to the reference
    assert message in capsys.readouterr().out


def test_few_shot_split_exercise_passes_the_reference(capsys):
    from tutorial_utils.exercises import nb4c

    assert nb4c.check_few_shot_split(scaling.few_shot_split) is scaling.few_shot_split
    assert "[ok]" in capsys.readouterr().out


def test_cached_pretraining_is_reused_only_for_the_same_data_and_options(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_DATA_DIR", str(tmp_path))
    sessions = tiny_sessions(3)
    fits = []
    original = scaling.fit_ndt1_stitch
    monkeypatch.setattr(scaling, "fit_ndt1_stitch", lambda *a, **k: fits.append(1) or original(*a, **k))
    first = scaling.pretrain(sessions[:2], profile=TINY, cache=True)
    again = scaling.pretrain(sessions[:2], profile=TINY, cache=True)
    assert len(fits) == 1  # loaded, not trained again
    for name, value in first.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[name], value)
    scaling.pretrain(sessions[1:], profile=TINY, cache=True)  # other sessions: a new model
    scaling.pretrain(sessions[:2], profile=TINY, cache=True, seed=1)  # another seed: a new model
    scaling.pretrain(sessions[:2], profile=replace(TINY, scaling_epochs=3), cache=True)  # another recipe: new
    assert len(fits) == 4


def test_refit_read_in_passes_patience_and_learning_rate_to_training():
    sessions = tiny_sessions(2)
    core = scaling.pretrain(sessions[:1], profile=TINY)
    held = sessions[1].spikes
    adapted = core.add_session(held.shape[2] - 2, held.shape[2])
    history = adapted.refit_read_in(1, held[:8], held[8:10], epochs=4, patience=None, read_out=True, progress=False)
    assert len(history.val_loss) == 4  # no early stopping: every epoch runs
    history = adapted.refit_read_in(1, held[:8], held[8:10], epochs=4, patience=0, read_out=True, progress=False)
    assert len(history.val_loss) == 1  # patience 0 stops after the first epoch
    before = adapted.model.read_in[1].weight.detach().clone()
    adapted.refit_read_in(1, held[:8], held[8:10], epochs=2, lr=0.0, read_out=True, progress=False)
    torch.testing.assert_close(adapted.model.read_in[1].weight, before)  # lr 0: nothing moves


def test_a_non_temporal_masking_gets_the_sessions_unit_areas(monkeypatch):
    calls = []
    monkeypatch.setattr(scaling, "fit_ndt1_stitch", lambda train, **kwargs: calls.append(kwargs))
    sessions = tiny_sessions(2)
    for session in sessions:
        session.area = np.array(["PMd", "M1"] * (session.spikes.shape[2] // 2) + ["M1"] * (session.spikes.shape[2] % 2))
    scaling.pretrain(sessions, profile=TINY)  # temporal: the old signature, no unit_areas
    scaling.pretrain(sessions, profile=TINY, masking="mtm")
    assert "unit_areas" not in calls[0]
    areas = calls[1]["unit_areas"]
    assert [a.tolist() for a in areas] == [[1, 0] * (s.spikes.shape[2] // 2) + [0] * (s.spikes.shape[2] % 2)
                                           for s in sessions]  # M1 = 0, PMd = 1 (sorted names)


def test_refit_read_in_hides_input_units_at_the_rate_asked(monkeypatch):
    sessions = tiny_sessions(2)
    core = scaling.pretrain(sessions[:1], profile=TINY)
    objectives = []
    monkeypatch.setattr(scaling_api, "train",
                        lambda model, train, val, objective, **kwargs: objectives.append(objective))
    held = sessions[1].spikes
    adapted = core.add_session(held.shape[2] - 2, held.shape[2])
    adapted.refit_read_in(1, held[:8], held[8:10], epochs=1, read_out=True, progress=False)
    adapted.refit_read_in(1, held[:8], held[8:10], epochs=1, read_out=True, progress=False, input_dropout=0.3)
    assert [o.input_dropout for o in objectives] == [0.0, 0.3]  # the default is unchanged
    scaling.adapt(core, held, scaling.few_shot_split(len(held), 5, n_eval=6), n_heldout=2,
                  profile=replace(TINY, stitch_input_dropout=0.4))
    assert objectives[-1].input_dropout == 0.4  # adaptation uses the pretraining recipe's input dropout


def _model_with_known_read_out(n_trials: int, seed: int = 0):
    """A tiny frozen NDT1-stitch and spikes whose last 3 units are Poisson GLMs of its own latents
    (weights ``true_w`` (3, D), ``true_b`` (3,)), and those latents (trials, T, D)."""
    from tutorial_utils.api import FittedStitch
    from tutorial_utils.models import NDT1Stitch
    from tutorial_utils.training import History, predict_hidden_bins

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = NDT1Stitch([6], 10, n_outputs=[9], d_model=8, dropout=0.0)
    inputs = rng.poisson(2.0, (n_trials, 10, 6)).astype(np.float32)
    latents = predict_hidden_bins(model, torch.as_tensor(inputs), torch.zeros(n_trials, dtype=torch.long),
                                  method="latents").numpy()
    true_w, true_b = rng.normal(0, 0.4, (3, 8)), np.array([0.5, 0.0, -0.5])
    heldout = rng.poisson(np.exp(latents @ true_w.T + true_b)).astype(np.float32)
    return FittedStitch(model, History()), np.concatenate([inputs, heldout], axis=2), true_w, true_b, latents


def test_fit_read_out_recovers_a_poisson_glm_of_the_latents_and_touches_only_its_units():
    fitted, spikes, true_w, true_b, latents = _model_with_known_read_out(n_trials=300)
    before = {k: v.clone() for k, v in fitted.model.state_dict().items()}
    alpha = fitted.fit_read_out(0, spikes[:200], spikes[200:], units=[6, 7, 8], alphas=(1e-4, 1e-3, 10.0))
    assert alpha in (1e-4, 1e-3)  # a huge penalty predicts the validation trials worse
    # The latents' layer norm makes the weights unique only up to a shift: compare log-rates.
    layer = fitted.model.read_out[0]
    fitted_log_rates = latents @ layer.weight[6:].detach().numpy().T + layer.bias[6:].detach().numpy()
    true_log_rates = latents @ true_w.T + true_b
    assert np.abs(fitted_log_rates - true_log_rates).mean() < 0.1
    assert np.corrcoef(fitted_log_rates.ravel(), true_log_rates.ravel())[0, 1] > 0.97
    after = fitted.model.state_dict()
    torch.testing.assert_close(after["read_out.0.weight"][:6], before["read_out.0.weight"][:6], rtol=0, atol=0)
    for name, value in before.items():  # nothing but the read-out moved
        if name not in ("read_out.0.weight", "read_out.0.bias"):
            torch.testing.assert_close(after[name], value, rtol=0, atol=0)
    rates = fitted.predict_rates(spikes[:20], 0)[..., 6:]  # and the model predicts with the new rows
    true_rates = np.exp(latents[:20] @ true_w.T + true_b)
    assert np.corrcoef(np.log(rates).ravel(), np.log(true_rates).ravel())[0, 1] > 0.95


@pytest.mark.parametrize("kwargs, match", [({"units": [9]}, "units"), ({"units": []}, "units"),
                                           ({"units": [1.5]}, "units"), ({"alphas": ()}, "alphas"),
                                           ({"alphas": (0.0, 1.0)}, "alphas")])
def test_fit_read_out_rejects_bad_units_and_penalties(kwargs, match):
    fitted, spikes, *_ = _model_with_known_read_out(n_trials=12)
    with pytest.raises(ValueError, match=match):
        fitted.fit_read_out(0, spikes[:8], spikes[8:], **kwargs)
