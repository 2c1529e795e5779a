"""The masking interface (masking.py) and multi-task masking: each scheme hides and scores exactly
what it claims, the causal scheme leaks no future, prompt tokens never reach the read-out."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from tutorial_utils.api import FittedStitch, fit_ndt1_stitch, load_checkpoint, save_checkpoint
from tutorial_utils.batches import Batch
from tutorial_utils.data.sessions import stitched_batch
from tutorial_utils.masking import (SCHEME_NAMES, CausalMasking, InterRegionMasking, IntraRegionMasking,
                                    NeuronMasking, TemporalMasking, make_schemes)
from tutorial_utils.models import NDT1Stitch
from tutorial_utils.objectives import StitchedMaskedAutoencoding


def _batch(n_trials=4, n_bins=6):
    """Two sessions: A has 4 units (3 inputs, 1 held out; areas 0 0 1 1), B 6 inputs (areas 0 0 1 1 2 2)."""
    a = torch.arange(1, 1 + n_trials * n_bins * 4, dtype=torch.float32).reshape(n_trials, n_bins, 4)
    b = 100 + torch.arange(1, 1 + n_trials * n_bins * 6, dtype=torch.float32).reshape(n_trials, n_bins, 6)
    return stitched_batch([a, b], n_inputs=[3, 6], unit_areas=[[0, 0, 1, 1], [0, 0, 1, 1, 2, 2]])


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_stitched_batch_says_which_units_exist_and_which_are_inputs():
    batch = _batch(n_trials=1)
    assert batch.spikes.shape == (2, 6, 6) and batch.targets.shape == (2, 6, 6)
    assert batch.unit_exists.tolist() == [[True] * 4 + [False] * 2, [True] * 6]
    assert batch.unit_is_input.tolist() == [[True] * 3 + [False] * 3, [True] * 6]
    assert batch.unit_areas.tolist() == [[0, 0, 1, 1, -1, -1], [0, 0, 1, 1, 2, 2]]
    assert (batch.spikes[0, :, 3:] == 0).all()  # session A's held-out unit is not an input


def test_temporal_scheme_scores_hidden_bins_and_heldout_units_never_padding():
    batch = _batch()
    masked = TemporalMasking(1 / 3)(batch, _generator())
    hidden = masked.hidden_bins
    assert hidden.sum(1).tolist() == [2] * 8  # a third of 6 bins per trial
    assert (masked.inputs[hidden] == 0).all() and torch.equal(masked.inputs[~hidden], batch.spikes[~hidden])
    a = masked.scored[:4]  # session A: inputs on hidden bins, the held-out unit on every bin, padding never
    assert torch.equal(a[:, :, :3], hidden[:4, :, None].expand(-1, -1, 3))
    assert a[:, :, 3].all() and not a[:, :, 4:].any()
    assert torch.equal(masked.scored[4:], hidden[4:, :, None].expand(-1, -1, 6))
    assert masked.scheme == SCHEME_NAMES.index("temporal") and not masked.causal


def test_temporal_scheme_can_also_hide_the_last_bins():
    batch = _batch()
    plain = TemporalMasking(1 / 6)(batch, _generator())
    masked = TemporalMasking(1 / 6, tail_bins=2)(batch, _generator())  # NeuroFMX: random bins + a forecast tail
    assert torch.equal(masked.hidden_bins, plain.hidden_bins | (torch.arange(6) >= 4)[None, :])
    hidden = masked.hidden_bins
    assert (masked.inputs[hidden] == 0).all() and torch.equal(masked.inputs[~hidden], batch.spikes[~hidden])
    assert torch.equal(masked.scored[4:], hidden[4:, :, None].expand(-1, -1, 6))
    with pytest.raises(ValueError, match="leaves no visible bins"):
        TemporalMasking(1 / 6, tail_bins=6)(batch, _generator())


def test_the_tail_is_hidden_on_top_of_a_custom_mask_fn():
    # a learner's mask_fn may hide bins its own way (here: -1); the tail adds zeros and keeps that
    def mark_first_bin(spikes, mask_ratio, generator):
        hidden = torch.zeros(spikes.shape[:2], dtype=torch.bool)
        hidden[:, 0] = True
        return spikes.masked_fill(hidden[:, :, None], -1.0), hidden

    masked = TemporalMasking(1 / 6, mask_fn=mark_first_bin, tail_bins=2)(_batch(), _generator())
    assert (masked.inputs[:, 0] == -1).all() and (masked.inputs[:, 4:] == 0).all()


def test_causal_scheme_hides_random_bins_scores_them_and_attends_causally():
    batch = _batch(n_trials=50, n_bins=10)
    masked = CausalMasking(0.3)(batch, _generator())
    assert masked.causal and masked.scheme == SCHEME_NAMES.index("causal")
    hidden = masked.hidden_bins  # (B, T): whole bins, every unit
    assert hidden.sum(1).tolist() == [3] * 100  # 30% of 10 bins in every trial
    assert (masked.inputs[hidden] == 0).all() and torch.equal(masked.inputs[~hidden], batch.spikes[~hidden])
    # scattered, not a block at the end: some hidden bin has a visible bin after it
    assert (hidden[:, :-1] & ~hidden[:, 1:]).any()
    assert len({tuple(h.nonzero().flatten().tolist()) for h in hidden}) > 10  # the bins vary by trial
    a = masked.scored[:50]  # session A: inputs on the hidden bins, the held-out unit on every bin, padding never
    assert torch.equal(a[:, :, :3], hidden[:50, :, None].expand(-1, -1, 3))
    assert a[:, :, 3].all() and not a[:, :, 4:].any()
    assert torch.equal(masked.scored[50:], hidden[50:, :, None].expand(-1, -1, 6))


def test_causal_scheme_predicts_every_hidden_bin_from_the_past_only():
    """Through the objective: changing a trial from bin t on never changes the prediction of a hidden bin t."""
    torch.manual_seed(0)
    model = NDT1Stitch([5], 12, d_model=8, n_heads=2, dropout=0.0, n_prompts=len(SCHEME_NAMES)).eval()
    objective = StitchedMaskedAutoencoding(schemes=[CausalMasking(0.3)], prompts=True)
    spikes = torch.poisson(torch.full((6, 12, 5), 2.0), generator=_generator())
    batch = Batch(spikes, session=torch.zeros(6, dtype=torch.long))
    masked = objective.hide(model, batch, _generator(3))
    with torch.no_grad():
        rates = objective.forward(model, batch, masked)
        for trial, t in masked.hidden_bins.nonzero().tolist():
            changed = masked.inputs.clone()
            changed[trial, t + 1:] = torch.poisson(torch.full_like(changed[trial, t + 1:], 6.0))
            again = objective.forward(model, batch, replace(masked, inputs=changed))
            torch.testing.assert_close(again[trial, : t + 1], rates[trial, : t + 1])
            assert t == 11 or not torch.allclose(again[trial, t + 1:], rates[trial, t + 1:])


def test_neuron_scheme_hides_whole_units_and_scores_exactly_them():
    batch = _batch(n_trials=200)
    masked = NeuronMasking(0.3)(batch, _generator())
    hidden = masked.scored[:, 0, :]  # (B, N_out), the same at every bin
    assert torch.equal(masked.scored, hidden[:, None, :].expand_as(masked.scored))
    assert not (hidden & ~batch.unit_exists).any()  # padding never
    assert hidden[:200, 3].all()  # session A's held-out unit is always a target
    inputs_hidden = hidden[:, :6] & batch.unit_is_input[:, :6]
    assert (masked.inputs.masked_select(inputs_hidden[:, None, :]) == 0).all()
    shown = batch.unit_is_input[:, :6] & ~hidden[:, :6]
    assert torch.equal(masked.inputs * shown[:, None], batch.spikes * shown[:, None])
    assert (inputs_hidden.sum(1) >= 1).all()  # at least one unit per trial
    fraction = inputs_hidden[200:].float().mean()
    assert 0.25 < fraction < 0.45  # ~30% (plus the at-least-one rule)


def test_intra_region_scheme_predicts_part_of_one_region_from_the_rest_of_it_only():
    batch = _batch(n_trials=100)
    masked = IntraRegionMasking(0.3)(batch, _generator())
    targets = masked.scored[:, 0, :]
    areas = batch.unit_areas
    chosen = {}
    for i in range(len(batch)):
        region = set(areas[i][targets[i]].tolist())
        assert len(region) == 1, "targets come from one region"
        r = region.pop()
        chosen.setdefault(int(batch.session[i]), set()).add(r)
        visible_units = (masked.inputs[i] != 0).any(0)  # counts are all >= 1, so 0 means hidden
        own = (areas[i, :6] == r) & batch.unit_is_input[i, :6]
        assert torch.equal(visible_units, own & ~targets[i, :6])  # the same region, minus the targets
        assert visible_units.any() or int(batch.session[i]) == 0  # session A's area 1 has one input unit
    assert chosen == {0: {0, 1}, 1: {0, 1, 2}}  # every region of each session gets drawn


def test_inter_region_scheme_hides_one_whole_region_and_shows_all_others():
    batch = _batch(n_trials=100)
    masked = InterRegionMasking()(batch, _generator())
    for i in range(len(batch)):
        targets = masked.scored[i, 0]
        region = set(batch.unit_areas[i][targets].tolist())
        assert len(region) == 1
        assert torch.equal(targets, batch.unit_areas[i] == region.pop())  # all of that region, nothing else
        visible_units = (masked.inputs[i] != 0).any(0)
        assert torch.equal(visible_units, batch.unit_is_input[i, :6] & ~targets[:6])
    assert torch.equal(masked.scored, masked.scored[:, :1].expand_as(masked.scored))


def test_region_schemes_and_scheme_names_reject_bad_input():
    batch = Batch(torch.ones(2, 5, 3))
    with pytest.raises(ValueError, match="unit_areas"):
        IntraRegionMasking()(batch)
    with pytest.raises(ValueError, match="unit_areas"):
        InterRegionMasking()(Batch(torch.ones(2, 5, 3), unit_areas=torch.zeros(2, 4, dtype=torch.long)))
    with pytest.raises(ValueError, match="unknown masking scheme 'time'"):
        make_schemes(["time"])
    with pytest.raises(ValueError, match="mask_ratio"):
        CausalMasking(mask_ratio=1.5)(batch)
    assert [s.name for s in make_schemes("mtm")] == ["causal", "neuron", "intra_region", "inter_region"]


def test_the_objective_draws_one_scheme_per_batch_and_prompts_with_its_id():
    batch = _batch()
    model = NDT1Stitch([3, 6], 6, n_outputs=[4, 6], d_model=8, n_heads=2, n_prompts=len(SCHEME_NAMES))
    seen = []
    forward = model.forward

    def spy(inputs, session, causal=False, prompt=None):
        seen.append((int(prompt[0]), causal, bool((prompt == prompt[0]).all())))
        return forward(inputs, session, causal, prompt)

    model.forward = spy
    objective = StitchedMaskedAutoencoding(schemes="mtm", prompts=True)
    generator = _generator()
    for _ in range(40):
        objective(model, batch, generator)
    ids = {prompt for prompt, _, _ in seen}
    assert ids == {SCHEME_NAMES.index(n) for n in ("causal", "neuron", "intra_region", "inter_region")}
    assert all(same for _, _, same in seen)  # one scheme per batch
    assert all(causal == (prompt == SCHEME_NAMES.index("causal")) for prompt, causal, _ in seen)


# --- prompt tokens in the model ---------------------------------------------------------------

def _prompted_model(n_bins=8):
    torch.manual_seed(0)
    return NDT1Stitch([5], n_bins, d_model=8, n_heads=2, dropout=0.0, n_prompts=len(SCHEME_NAMES)).eval()


def test_causal_attention_with_a_prompt_leaks_no_future():
    model = _prompted_model()
    spikes = torch.poisson(torch.full((3, 8, 5), 2.0), generator=_generator())
    changed = spikes.clone()
    changed[:, 5:] = torch.poisson(torch.full((3, 3, 5), 5.0), generator=_generator(1))
    session, prompt = torch.zeros(3, dtype=torch.long), torch.tensor([1, 1, 1])
    with torch.no_grad():
        before, after = model(spikes, session, True, prompt), model(changed, session, True, prompt)
        bidirectional = model(changed, session, False, prompt)
    torch.testing.assert_close(before[:, :5], after[:, :5])  # bins 0-4 never see bins 5-7
    assert not torch.allclose(before[:, 5:], after[:, 5:])
    assert not torch.allclose(bidirectional[:, :5], before[:, :5])  # without the causal mask they would


def test_prompt_tokens_are_attended_but_never_reach_the_read_out():
    model = _prompted_model()
    spikes = torch.poisson(torch.full((2, 8, 5), 2.0), generator=_generator())
    session = torch.zeros(2, dtype=torch.long)
    read_out_inputs = []
    model.read_out[0].register_forward_hook(lambda module, args, output: read_out_inputs.append(args[0].shape))
    with torch.no_grad():
        plain = model(spikes, session)
        prompted = [model(spikes, session, prompt=torch.tensor([p, p])) for p in range(len(SCHEME_NAMES))]
        first_bin_causal = [model(spikes, session, True, torch.tensor([p, p]))[:, 0] for p in (0, 1)]
    assert set(read_out_inputs) == {torch.Size([2, 8, 8])}  # only the 8 bins, never a 9th (prompt) token
    assert all(p.shape == plain.shape for p in prompted)
    assert not torch.allclose(prompted[1], prompted[2])  # the prompt changes what the model predicts
    assert not torch.allclose(*first_bin_causal)  # even bin 0 sees the prompt under a causal mask


def test_a_prompt_keeps_the_models_full_length_and_positions():
    model = _prompted_model(n_bins=8)
    spikes, session = torch.ones(1, 8, 5), torch.zeros(1, dtype=torch.long)
    assert model(spikes, session, prompt=torch.tensor([0])).shape == (1, 8, 5)  # 8 bins + prompt fit n_bins=8
    with pytest.raises(ValueError, match="longer than"):
        model(torch.ones(1, 9, 5), session, prompt=torch.tensor([0]))
    # the bins keep their own positions: a zero prompt vector changes nothing but the attention to it
    with torch.no_grad():
        model.prompt_embedding.weight.zero_()
    tokens = model.read_in[0](spikes) + model.session_embedding(session)[:, None, :]
    core = model.core
    x = torch.cat([torch.zeros(1, 1, 8), tokens + core.positional_encoding[:8]], dim=1)
    expected = model.read_out[0](core.norm(core.layers(x))[:, 1:])
    torch.testing.assert_close(model(spikes, session, prompt=torch.tensor([0])), expected)


def test_prompts_reject_bad_input():
    model = _prompted_model()
    spikes, session = torch.ones(2, 8, 5), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="prompt ids must be 0..4"):
        model(spikes, session, prompt=torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="integer ids"):
        model(spikes, session, prompt=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="no prompt tokens"):
        NDT1Stitch([5], 8, d_model=8, n_heads=2)(spikes, session, prompt=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="n_prompts"):
        NDT1Stitch([5], 8, d_model=8, n_heads=2, n_prompts=-1)


def test_prompted_models_save_and_load_and_old_checkpoints_still_load(tmp_path):
    model = _prompted_model()
    again, _ = load_checkpoint(save_checkpoint(tmp_path / "p.pt", model))
    assert again.config.n_prompts == len(SCHEME_NAMES)
    torch.testing.assert_close(again.prompt_embedding.weight, model.prompt_embedding.weight)
    # a checkpoint written before prompts existed: no n_prompts in its config
    old = NDT1Stitch([5], 8, d_model=8, n_heads=2)
    path = save_checkpoint(tmp_path / "old.pt", old)
    state = torch.load(path, weights_only=False)
    del state["config"]["n_prompts"]
    torch.save(state, path)
    loaded = FittedStitch.load(path)
    assert loaded.model.config.n_prompts == 0 and not hasattr(loaded.model, "prompt_embedding")


def test_fit_ndt1_stitch_trains_mtm_with_prompts_and_rejects_missing_areas():
    counts = np.random.default_rng(0).poisson(1.0, (30, 10, 6))
    fitted = fit_ndt1_stitch([counts], masking="mtm", prompts=True, unit_areas=[[0, 0, 0, 1, 1, 1]],
                             epochs=2, d_model=8, progress=False)
    assert fitted.model.config.n_prompts == len(SCHEME_NAMES) and len(fitted.history.train_loss) == 2
    with pytest.raises(ValueError, match="unit_areas"):
        fit_ndt1_stitch([counts], masking=["inter_region"], epochs=1, progress=False)
    with pytest.raises(ValueError, match="masking"):
        fit_ndt1_stitch([counts], masking=42, epochs=1, progress=False)
    with pytest.raises(ValueError, match="unit_areas\\[0\\] has 5 entries"):
        fit_ndt1_stitch([counts], masking="mtm", unit_areas=[[0, 0, 1, 1, 1]], epochs=1, progress=False)
