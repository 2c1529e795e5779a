"""NeuroFMX (Notebook 4B): the model's contracts, on small seeded cases.

Permutation invariance of the aggregator (and of the whole model's population read-out), each head
and the combined loss with known values, uncertainty weighting as defined, adapters that leave the
frozen parts frozen, CPU bfloat16 autocast and `meta`-device runs, missing modalities, bad input.
"""
import copy
import math

import pytest
import torch

from tutorial_utils.models.neurofmx import (HEADS, BehaviourHead, ContrastiveHead, EncoderHead, ForecastHead,
                                            MultimodalBatch, MultiTaskLoss, NeuroFMX, NeuroFMXConfig,
                                            NeuroFMXObjective, PerceiverDecoder, PerceiverEncoder, PopulationAggregator,
                                            SpikeTokenizer, add_session,
                                            behaviour_positives, cross_attention, freeze_all_but_session, info_nce,
                                            set_baseline_rates)
from tutorial_utils.models.neurofmx.attention import fast_cross_attention
from tutorial_utils.models.neurofmx import experiments
from tutorial_utils.models.neurofmx.experiments import evaluate, make_backbone
from tutorial_utils.runtime import autocast
from tutorial_utils.training import train

META = torch.device("meta")
T, PATCH = 10, 5


def _config(**change):
    base = dict(n_inputs=[4, 6], n_outputs=[5, 8], d_model=8, n_latents=3, n_heads=2, dropout=0.0,
                modalities=("spikes", "calcium"), patch_bins=PATCH, forecast_bins=PATCH, aggregator_layers=1,
                d_embed=4, contrastive_samples=None)
    base.pop("contrastive_samples")
    base.update(change)
    return NeuroFMXConfig(**base)


def _model(backbone="transformer", seed=0, **change):
    torch.manual_seed(seed)
    config = _config(**change)
    return NeuroFMX(config, make_backbone(backbone, config.d_model, T // config.patch_bins, dropout=0.0))


def _batch(n=6, seed=0, calcium=True):
    g = torch.Generator().manual_seed(seed)
    session = torch.tensor([0, 1] * (n // 2))
    spikes = torch.poisson(torch.full((n, T, 6), 1.0), generator=g)
    spikes[session == 0, :, 4:] = 0  # session 0 has 4 input units: padding
    targets = torch.poisson(torch.full((n, T, 8), 1.0), generator=g)
    targets[session == 0, :, 5:] = 0
    extra = {}
    if calcium:
        extra = dict(calcium=torch.randn(n, T, 6, generator=g), spike_present=torch.tensor([True, True, False] * (n // 3)),
                     calcium_present=torch.tensor([True, False, True] * (n // 3)))
    # which target units exist in each trial's session, and which are inputs (the config's n_outputs / n_inputs)
    columns = torch.arange(8)[None, :]
    exists = columns < torch.tensor([5, 8])[session][:, None]
    is_input = columns < torch.tensor([4, 6])[session][:, None]
    return MultimodalBatch(spikes, targets=targets, session=session, behaviour=torch.randn(n, T, 2, generator=g),
                           unit_exists=exists, unit_is_input=is_input, **extra)


# --- attention and permutation invariance -------------------------------------------------------

def test_cross_attention_ignores_padded_keys_and_matches_the_fused_kernel():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    mask = torch.zeros(2, 3, 5, dtype=torch.bool)
    mask[..., 3:] = True
    got = cross_attention(q, k, v, mask)
    changed = v.clone()
    changed[..., 3:, :] = 1e3  # the padded keys' values must not matter
    assert torch.allclose(got, cross_attention(q, k, changed, mask))
    assert torch.allclose(got, cross_attention(q, k[..., :3, :], v[..., :3, :]), atol=1e-6)  # as if never there
    assert torch.allclose(got, fast_cross_attention(q, k, v, mask), atol=1e-6)


def test_perceiver_reads_the_size_of_its_tokens():
    """A unit token's size says how active the unit was (token = embedding * value encoding), so the
    Perceiver must not normalise it away: doubling every token changes the latents and the units' reads."""
    g = torch.Generator().manual_seed(0)
    tokens, mask = torch.randn(2, 3, 5, 8, generator=g), torch.zeros(2, 5, dtype=torch.bool)
    encoder, decoder = PerceiverEncoder(8, n_latents=4).eval(), PerceiverDecoder(8).eval()
    latents = encoder(tokens, mask)
    assert not torch.allclose(latents, encoder(2 * tokens, mask), atol=1e-3)
    queries = torch.randn(2, 6, 8, generator=g)
    assert not torch.allclose(decoder(queries, latents), decoder(queries, 2 * latents), atol=1e-3)


def test_a_silent_unit_token_is_only_its_modality():
    """Tokens are centred: a patch without spikes encodes to 0, so the many silent units of sparse
    recordings add nothing to the latents' average but their (shared) modality embedding."""
    g = torch.Generator().manual_seed(0)
    tokenizer = SpikeTokenizer(8, patch_bins=5)
    counts = torch.zeros(2, 10, 3)
    counts[0, 2, 1] = 2.0  # unit 1 fires in patch 0 of trial 0; everything else is silent
    tokens = tokenizer(counts, torch.randn(2, 3, 8, generator=g))
    silent = torch.ones(2, 2, 3, dtype=torch.bool)
    silent[0, 0, 1] = False
    assert torch.allclose(tokens[silent], tokenizer.modality_embedding.detach().expand(int(silent.sum()), -1), atol=1e-6)
    assert not torch.allclose(tokens[0, 0, 1], tokenizer.modality_embedding.detach(), atol=1e-3)


def test_the_backbone_is_told_where_in_the_trial_each_patch_is():
    """With positions (the default) identical patches reach the backbone as different vectors
    (sinusoidal codes of the patch index); without, they stay identical."""
    from tutorial_utils.models.neurofmx import LatentBackbone

    latents = torch.randn(2, 1, 3, 8).expand(-1, 6, -1, -1)  # the same latents in all 6 patches
    told = LatentBackbone(torch.nn.Identity(), 3, 8).eval()
    blind = LatentBackbone(torch.nn.Identity(), 3, 8, positions=False).eval()
    blind.load_state_dict(told.state_dict())
    with torch.no_grad():
        assert not torch.allclose(told(latents)[:, 0], told(latents)[:, 5], atol=1e-3)
        assert torch.allclose(blind(latents)[:, 0], blind(latents)[:, 5], atol=1e-6)
    assert _model(positions=False).latent_backbone.positions is False and _model().latent_backbone.positions


def test_input_dropout_hides_whole_units_only_while_training():
    model, batch = _model(), _batch(calcium=False)
    seen = []
    forward = model.forward
    model.forward = lambda **inputs: seen.append(inputs["spikes"].clone()) or forward(**inputs)
    objective = NeuroFMXObjective(tasks=("encoder",), input_dropout=0.5)
    objective(model.train(), batch, torch.Generator().manual_seed(0))
    objective(model.eval(), batch, torch.Generator().manual_seed(0))
    NeuroFMXObjective(tasks=("encoder",))(model.train(), batch, torch.Generator().manual_seed(0))
    dropped, kept, plain = seen
    silenced = (dropped == 0).all(dim=1) & (plain != 0).any(dim=1)  # (trials, units) hidden for every bin
    assert silenced.any() and torch.equal(kept, plain)
    assert torch.allclose(dropped[~silenced[:, None].expand_as(dropped)], 2 * plain[~silenced[:, None].expand_as(plain)])
    with pytest.raises(ValueError, match="input_dropout"):
        NeuroFMXObjective(input_dropout=1.0)


def test_aggregator_is_permutation_invariant_over_units():
    torch.manual_seed(0)
    aggregator = PopulationAggregator(8, n_layers=1, n_seeds=2, n_heads=2).eval()
    units = torch.randn(3, 4, 7, 8)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, 5:] = True
    order = torch.randperm(7)
    before = aggregator(units, padding)
    after = aggregator(units[:, :, order], padding[:, order])
    assert before.shape == (3, 4, 8)
    assert torch.allclose(before, after, atol=1e-5)
    # not trivially constant: other units give another summary
    assert not torch.allclose(before, aggregator(units.flip(-1), padding), atol=1e-3)


def test_population_of_the_whole_model_is_permutation_invariant_over_units():
    model = _model(n_inputs=[6], n_outputs=[6]).eval()
    batch = _batch(calcium=False)
    spikes = batch.spikes
    out = model(spikes=spikes)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    shuffled = copy.deepcopy(model)
    with torch.no_grad():  # the same units in another order: their embeddings move with them
        shuffled.unit_adapters[0].table.copy_(model.unit_adapters[0].table[order])
        shuffled.unit_adapters[0].log_rate_bias.copy_(model.unit_adapters[0].log_rate_bias[order])
    out_shuffled = shuffled(spikes=spikes[:, :, order])
    assert torch.allclose(out.population, out_shuffled.population, atol=1e-5)
    assert torch.allclose(out.behaviour, out_shuffled.behaviour, atol=1e-5)
    assert torch.allclose(out.log_rates[:, :, order], out_shuffled.log_rates, atol=1e-5)


# --- heads and losses on seeded cases -----------------------------------------------------------

def test_info_nce_exact_values():
    anchors = torch.eye(3)
    # each anchor's positive is itself: logits diag 1/t, off-diagonal 0
    t = 0.5
    want = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert info_nce(anchors, anchors, t).item() == pytest.approx(want, rel=1e-6)
    # positives shuffled: each anchor's positive is orthogonal to it and another anchor's copy is
    shifted = anchors[[1, 2, 0]]
    want_wrong = -math.log(1 / (math.exp(1 / t) + 2))
    assert info_nce(anchors, shifted, t).item() == pytest.approx(want_wrong, rel=1e-6)


def test_behaviour_positives_pick_the_nearest_other_sample():
    behaviour = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.0, 5.2]])
    assert behaviour_positives(behaviour).tolist() == [1, 0, 3, 2]


def test_heads_shapes_and_known_values():
    torch.manual_seed(0)
    units, embeddings, population = torch.randn(2, 3, 4, 8), torch.randn(2, 4, 8), torch.randn(2, 3, 8)
    encoder = EncoderHead(8, patch_bins=5)
    assert torch.equal(encoder(units, embeddings), torch.zeros(2, 15, 4))  # zero-initialised: baseline rates only
    with torch.no_grad():
        encoder.linear.weight.copy_(torch.eye(8))
        encoder.linear.bias.zero_()
    log_rates = encoder(units, embeddings)
    read = (units * embeddings[:, None]).sum(-1)  # (B, P, N): e_n . state[p, n], one value per patch
    # the centre bin of patch p carries its value; bins between centres are linear in between
    # (smooth rates: a per-bin read-out fitted bin-to-bin noise on real recordings), flat at the ends
    assert torch.allclose(log_rates[:, 5 * 1 + 2], read[:, 1], atol=1e-6)
    assert torch.allclose(log_rates[:, 5 * 2], 0.4 * read[:, 1] + 0.6 * read[:, 2], atol=1e-6)
    assert torch.allclose(log_rates[:, :3], read[:, :1].expand(-1, 3, -1), atol=1e-6)
    assert torch.allclose(log_rates[:, 12:], read[:, 2:].expand(-1, 3, -1), atol=1e-6)
    forecast = ForecastHead(8, 5)
    assert forecast(units, embeddings).shape == (2, 3, 4, 5)
    behaviour = BehaviourHead(8, 2, patch_bins=5)
    assert behaviour(population).shape == (2, 15, 2)
    want = (population[:, 1] @ behaviour.linear.weight.T + behaviour.linear.bias).reshape(2, 5, 2)
    assert torch.allclose(behaviour(population)[:, 5:10], want, atol=1e-6)
    embedding = ContrastiveHead(8, 4)(population)
    assert embedding.shape == (2, 3, 4)
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(2, 3), atol=1e-5)


def test_per_unit_readout_equals_projecting_every_state_then_reading_it():
    """The rate heads' shortcut (read-out vectors W_j^T e_n built once per unit) gives the numbers
    of the plain computation e_n . (W_j s + b_j) for every unit state s."""
    from tutorial_utils.models.neurofmx.heads import per_unit_readout

    g = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(8, 3 * 8)
    torch.nn.init.normal_(linear.bias, generator=g)
    units, embeddings = torch.randn(2, 4, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    plain = (linear(units).unflatten(-1, (3, 8)) * embeddings[:, None, :, None]).sum(-1)  # (B, P, N, k)
    assert torch.allclose(per_unit_readout(linear, units, embeddings, 3), plain, atol=1e-5)


def test_notebook_weights_let_the_rate_heads_be_heard():
    """Notebook 4B's default: fixed weights, the rate heads weighted far above the contrastive loss
    (with uncertainty weighting the quick-profile full model reached co-bps 0.04, with these 0.10)."""
    from types import SimpleNamespace

    from tutorial_utils.models.neurofmx import experiments

    session = SimpleNamespace(heldin_spikes=torch.zeros(2, 10, 6), all_spikes=lambda: torch.zeros(2, 10, 8))
    config = experiments.default_config(session, SimpleNamespace(nfmx_d_model=8, nfmx_latents=2))
    loss = MultiTaskLoss(config.heads, config.weighting, config.loss_weights)
    assert config.weighting == "fixed"
    assert loss.weight("encoder") > loss.weight("behaviour") > loss.weight("contrastive")


def test_fixed_weighting_is_the_weighted_sum():
    loss = MultiTaskLoss(["a", "b"], "fixed", {"a": 2.0})
    out = loss({"a": torch.tensor(1.5), "b": torch.tensor(0.25)})
    assert out["total"].item() == pytest.approx(2.0 * 1.5 + 0.25)
    assert out["a"].item() == 1.5 and out["b"].item() == 0.25


def test_uncertainty_weighting_behaves_as_defined():
    loss = MultiTaskLoss(["a", "b"], "uncertainty")
    parts = {"a": torch.tensor(4.0), "b": torch.tensor(0.5)}
    assert loss(parts)["total"].item() == pytest.approx(4.5)  # s = 0: weights 1
    with torch.no_grad():
        loss.log_vars["a"].fill_(math.log(2.0))
    assert loss(parts)["total"].item() == pytest.approx(4.0 / 2 + math.log(2.0) + 0.5)
    assert loss.weight("a") == pytest.approx(0.5)
    # minimising over s with the losses fixed: s_i -> log L_i, so the big loss gets the small weight
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.05)
    for _ in range(800):
        optimizer.zero_grad()
        loss(parts)["total"].backward()
        optimizer.step()
    assert loss.log_vars["a"].item() == pytest.approx(math.log(4.0), abs=1e-2)
    assert loss.log_vars["b"].item() == pytest.approx(math.log(0.5), abs=1e-2)
    assert loss.weight("a") < loss.weight("b")


def test_combined_objective_on_a_seeded_case():
    model = _model(weighting="fixed", loss_weights={"contrastive": 0.1})
    batch = _batch()
    objective = NeuroFMXObjective(contrastive_samples=16)
    first = objective(model, batch, torch.Generator().manual_seed(0))
    again = objective(model, batch, torch.Generator().manual_seed(0))
    assert set(first) == set(HEADS) | {"total"}
    assert all(torch.isfinite(v) for v in first.values())
    for name in first:  # reproducible with the same generator
        assert first[name].item() == again[name].item()
    want = first["encoder"] + first["behaviour"] + first["forecast"] + 0.1 * first["contrastive"]
    assert first["total"].item() == pytest.approx(want.item(), rel=1e-6)
    # heads zero-initialised on baseline rates 0 (rate 1): the Poisson NLL of rate 1 is 1 per entry
    assert first["encoder"].item() == pytest.approx(1.0, abs=1e-6)
    assert first["forecast"].item() == pytest.approx(1.0, abs=1e-6)
    set_baseline_rates(model, 1, batch.target_counts[batch.session == 1])
    assert objective(model, batch, torch.Generator().manual_seed(0))["encoder"].item() < 1.0


def test_hidden_bins_include_the_forecast_tail():
    batch = _batch()
    masked, calcium = NeuroFMXObjective(mask_ratio=0.2).hide(batch, PATCH, torch.Generator().manual_seed(0))
    spikes, hidden = masked.inputs, masked.hidden_bins
    assert hidden[:, -PATCH:].all() and hidden[:, :-PATCH].sum(1).le(2).all()  # the tail + at most 20% of 10 bins
    assert (spikes[:, -PATCH:] == 0).all() and (calcium[:, -PATCH:] == 0).all()
    assert torch.equal(spikes[~hidden], batch.spikes[~hidden])
    # scored: input units on hidden bins, output-only units on every bin, padding never
    scored = masked.scored
    assert scored[0, :, 5:].sum() == 0 and scored[0, :, 4].all()  # session 0: units 5-7 are padding, 4 output-only
    assert torch.equal(scored[1, :, :6], hidden[1][:, None].expand(-1, 6)) and scored[1, :, 6:].all()


def test_encoder_loss_scores_the_units_the_batch_says_exist():
    model = _model()
    with torch.no_grad():  # rates other than 1, so the NLL depends on the targets
        for adapter in model.unit_adapters:
            adapter.log_rate_bias.fill_(0.5)
    batch = _batch(calcium=False)
    objective = NeuroFMXObjective(tasks=("encoder", "forecast"))
    absent = copy.deepcopy(batch)  # unit 7 exists in session 1 by the model's config, but this batch
    absent.unit_exists[:, 7] = False  # says it was not recorded: it must never be scored
    absent.unit_is_input[:, 7] = False
    clean = objective(model, absent, torch.Generator().manual_seed(0))
    absent.targets[:, :, 7] = 1000.0
    poisoned = objective(model, absent, torch.Generator().manual_seed(0))
    for name in ("encoder", "forecast"):
        assert poisoned[name].item() == pytest.approx(clean[name].item(), rel=1e-6), name


def test_encoder_loss_skips_trials_without_spikes():
    model = _model()
    with torch.no_grad():  # rates other than 1, so the NLL depends on the targets
        for adapter in model.unit_adapters:
            adapter.log_rate_bias.fill_(0.5)
    batch = _batch()
    objective = NeuroFMXObjective(tasks=("encoder",))
    base = objective(model, batch, torch.Generator().manual_seed(0))["encoder"]
    poisoned = copy.deepcopy(batch)
    poisoned.targets[~batch.spike_present] = 1000.0  # calcium-only trials: their spike targets do not exist
    assert objective(model, poisoned, torch.Generator().manual_seed(0))["encoder"].item() == pytest.approx(base.item())


# --- adapters -----------------------------------------------------------------------------------

def test_frozen_backbone_stays_frozen_when_fitting_an_adapter():
    model = _model()
    bigger = add_session(model, n_inputs=3, n_outputs=5)
    assert len(bigger.unit_adapters) == 3 and bigger.config.n_outputs[-1] == 5
    before = copy.deepcopy(bigger.state_dict())
    trainable = freeze_all_but_session(bigger, 2)
    assert trainable and all(".2." in name or name.endswith(".2") for name in trainable), trainable
    g = torch.Generator().manual_seed(3)
    batch = MultimodalBatch(torch.poisson(torch.ones(4, T, 3), generator=g),
                            targets=torch.poisson(torch.ones(4, T, 5), generator=g),
                            session=torch.full((4,), 2, dtype=torch.long))
    train(bigger, batch, None, NeuroFMXObjective(tasks=("encoder",)), epochs=2, batch_size=2, progress=False,
          weight_decay=0.1)
    after = bigger.state_dict()
    changed = {name for name in after if not torch.equal(after[name], before[name])}
    assert changed and changed <= {n for n in after if n.startswith("unit_adapters.2.") or n.endswith("scale.2")
                                   or n.endswith("shift.2")}, changed
    assert any(name.startswith("unit_adapters.2.") for name in changed)


def test_fit_neurofmx_selects_on_the_encoder_loss_when_it_trains_that_head(monkeypatch):
    """The weighted total is dominated by the auxiliary heads (on the real yardstick the forecast
    head's made the first epoch look best); the rates are judged by the encoder loss."""
    from tutorial_utils.models.neurofmx import experiments
    from tutorial_utils.runtime import get_profile

    chosen = []
    monkeypatch.setattr(experiments, "train", lambda *args, **kwargs: chosen.append(kwargs["select_on"]))
    profile, batch = get_profile("quick"), _batch()
    experiments.fit_neurofmx(_model(heads=("encoder", "forecast")), batch, batch, profile)
    experiments.fit_neurofmx(_model(), batch, batch, profile, objective=NeuroFMXObjective(tasks=("behaviour",)))
    experiments.fit_neurofmx(_model(heads=("behaviour", "contrastive")), batch, batch, profile)
    experiments.fit_neurofmx(_model(), batch, batch, profile, select_on="total")
    assert chosen == ["encoder", "total", "total", "total"]


# --- precision and devices ----------------------------------------------------------------------

@pytest.mark.parametrize("backbone", ["transformer", "ssm"])
def test_one_training_step_under_cpu_bfloat16_autocast(backbone):
    model = _model(backbone, weighting="uncertainty")
    batch = _batch()
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with autocast("cpu", torch.bfloat16):
        losses = NeuroFMXObjective(contrastive_samples=16)(model, batch, torch.Generator().manual_seed(0))
    assert losses["total"].dtype == torch.float32 and torch.isfinite(losses["total"])
    losses["total"].backward()
    optimizer.step()
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("backbone", ["transformer", "ssm"])
def test_model_and_every_head_run_on_meta(backbone):
    model = _model(backbone).to(META)
    batch = _batch().to(META)
    out = model(spikes=batch.spikes, session=batch.session, calcium=batch.calcium,
                spike_present=batch.spike_present, calcium_present=batch.calcium_present)
    assert out.log_rates.device.type == "meta" and out.log_rates.shape == (6, T, 8)
    assert out.forecast.shape == (6, T // PATCH, 8, PATCH)
    assert out.behaviour.shape == (6, T, 2) and out.embedding.shape == (6, T // PATCH, 4)
    losses = NeuroFMXObjective(contrastive_samples=16)(model, batch, torch.Generator().manual_seed(0))
    assert set(losses) == set(HEADS) | {"total"} and losses["total"].device.type == "meta"
    bigger = add_session(model, 3, 4)
    assert bigger.unit_adapters[-1].table.device.type == "meta"


def test_small_data_configuration_trains_under_bfloat16_and_runs_on_meta():
    """experiments.SMALL_DATA_CONFIG / SMALL_DATA_SSM (the real-data yardstick's NeuroFMX): tokens
    mean-pooled, the encoder head alone, a 4-state SSM as wide as the model."""
    config = _config(**experiments.SMALL_DATA_CONFIG)
    torch.manual_seed(0)
    model = experiments.build_model(config, "ssm", T // PATCH, **experiments.SMALL_DATA_SSM)
    mixer = model.backbone.layers[0].mixer
    assert (mixer.d_inner, mixer.d_state, tuple(mixer.A_log.shape)) == (8, 4, (8, 4))
    assert model.encoder.n_latents == 1 and set(model.heads) == {"encoder"}
    batch = _batch()
    with autocast("cpu", torch.bfloat16):
        losses = NeuroFMXObjective()(model, batch, torch.Generator().manual_seed(0))
    assert set(losses) == {"encoder", "total"} and torch.isfinite(losses["total"])
    losses["total"].backward()
    assert model.backbone.layers[0].mixer.in_proj.weight.grad is not None
    on_meta = model.to(META)(spikes=batch.spikes.to(META), session=batch.session.to(META),
                             calcium=batch.calcium.to(META))
    assert on_meta.log_rates.device.type == "meta" and on_meta.forecast is None


def test_the_transformer_backbone_ignores_the_ssm_sizes():
    plain = make_backbone("transformer", 8, 2)
    sized = make_backbone("transformer", 8, 2, d_state=4, expand=1)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in sized.parameters()]


# --- modalities ---------------------------------------------------------------------------------

def test_missing_modality_is_handled():
    model = _model().eval()
    batch = _batch()
    both = model(spikes=batch.spikes, session=batch.session, calcium=batch.calcium)
    spikes_only = model(spikes=batch.spikes, session=batch.session)
    calcium_only = model(calcium=batch.calcium, session=batch.session)
    for out in (both, spikes_only, calcium_only):
        assert torch.isfinite(out.log_rates).all() and out.log_rates.shape == (6, T, 8)
    assert not torch.allclose(both.population, spikes_only.population)
    # marking calcium absent for a trial equals not giving it (its tokens are masked, not zeroed)
    absent = model(spikes=batch.spikes, session=batch.session, calcium=torch.randn_like(batch.calcium),
                   calcium_present=torch.zeros(6, dtype=torch.bool))
    assert torch.allclose(absent.population, spikes_only.population, atol=1e-5)
    assert torch.allclose(absent.log_rates, spikes_only.log_rates, atol=1e-5)


def test_evaluate_with_a_dropped_modality():
    model = _model(n_inputs=[6], n_outputs=[8])
    batch = _batch(calcium=True)
    batch.session = torch.zeros(6, dtype=torch.long)
    batch.spike_present = batch.calcium_present = torch.ones(6, dtype=torch.bool)  # paired trials
    for drop in ((), ("calcium",), ("spikes",)):
        scores = evaluate(model, batch, n_heldin=6, drop=drop)
        assert math.isfinite(scores["co-bps"]) and math.isfinite(scores["velocity R^2"])


# --- bad input ----------------------------------------------------------------------------------

def test_bad_input_errors():
    model = _model()
    batch = _batch()
    with pytest.raises(ValueError, match="needs spikes and/or calcium"):
        model(session=batch.session)
    with pytest.raises(ValueError, match="time bins, units"):
        model(spikes=batch.spikes[0], session=batch.session[:1])
    with pytest.raises(ValueError, match="pass session"):
        model(spikes=batch.spikes)
    with pytest.raises(ValueError, match="widest session"):
        model(spikes=torch.zeros(6, T, 9), session=batch.session)
    with pytest.raises(ValueError, match="no input at all"):
        model(spikes=batch.spikes, session=batch.session, spike_present=torch.zeros(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="patches of 5"):
        model(spikes=batch.spikes[:, :7], session=batch.session)
    with pytest.raises(ValueError, match="no calcium tokenizer"):
        _model(modalities=("spikes",))(calcium=batch.calcium, session=batch.session)
    with pytest.raises(ValueError, match="same trials, bins and units"):
        model(spikes=batch.spikes, calcium=batch.calcium[:, :, :5], session=batch.session)
    with pytest.raises(ValueError, match="weighting"):
        MultiTaskLoss(["a"], "learned")
    with pytest.raises(ValueError, match="not tasks"):
        MultiTaskLoss(["a"], "fixed", {"b": 1.0})
    with pytest.raises(ValueError, match="heads must be"):
        _config(heads=("encoder", "decoder"))
    with pytest.raises(ValueError, match="multiple"):
        _config(forecast_bins=3)
    with pytest.raises(ValueError, match="behaviour"):
        NeuroFMXObjective()(model, MultimodalBatch(batch.spikes, targets=batch.targets, session=batch.session))
    with pytest.raises(ValueError, match="same width"):
        NeuroFMX(_config(), make_backbone("ssm", 16, 2))
    with pytest.raises(ValueError, match="divides"):
        SpikeTokenizer(8, 3)(torch.zeros(1, 10, 2), torch.zeros(1, 2, 8))


# --- exercises ----------------------------------------------------------------------------------

def test_exercise_references_pass_and_mistakes_are_named(capsys):
    import torch.nn.functional as F

    from tutorial_utils.exercises import nb4b

    assert nb4b.check_cross_attention(cross_attention) is cross_attention
    assert nb4b.check_info_nce(info_nce) is info_nce

    def no_mask(q, k, v, mask):
        return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1) @ v

    def no_temperature(a, p, t):
        return F.cross_entropy(a @ p.T, torch.arange(len(a), device=a.device))

    def labels_on_cpu(a, p, t):
        return F.cross_entropy(a @ p.T / t, torch.arange(len(a)))

    capsys.readouterr()
    assert nb4b.check_cross_attention(no_mask) is cross_attention
    assert nb4b.check_info_nce(no_temperature) is info_nce
    assert nb4b.check_info_nce(labels_on_cpu) is info_nce
    out = capsys.readouterr().out
    assert "padding mask is ignored" in out and "temperature" in out and "crash on a GPU" in out


def test_low_rank_unit_adapter_and_new_session_shapes():
    from tutorial_utils.models.neurofmx import UnitIDAdapter

    adapter = UnitIDAdapter(7, 8, rank=2)
    assert adapter().shape == (7, 8) and torch.linalg.matrix_rank(adapter().detach()) <= 2
    assert sum(p.numel() for p in adapter.parameters()) == 7 * 2 + 2 * 8 + 7  # codes, basis, baseline rates
    model = _model(n_inputs=[6], n_outputs=[8]).eval()
    bigger = add_session(model, 3, 5, rank=2)
    spikes = torch.poisson(torch.ones(2, T, 3))
    out = bigger(spikes=spikes, session=torch.tensor([1, 1]))
    assert out.log_rates.shape == (2, T, 8)  # padded to the widest session
    with pytest.raises(ValueError, match="n_inputs=6 > n_outputs=5"):
        add_session(model, 6, 5)


def test_session_batch_mixes_modalities_and_rejects_missing_calcium():
    import numpy as np

    from tutorial_utils.models.neurofmx import experiments

    class Session:  # the few MazeSession fields session_batch reads
        rng = np.random.default_rng(0)
        heldin_spikes = rng.poisson(1.0, (9, T, 3)).astype(np.float32)
        heldout_spikes = rng.poisson(1.0, (9, T, 2)).astype(np.float32)
        hand_vel = rng.normal(size=(9, T, 2)).astype(np.float32)
        split = np.array(["train"] * 9)

        def trials(self, split):
            return np.flatnonzero(self.split == split)

        def all_spikes(self, split=None):
            return np.concatenate([self.heldin_spikes, self.heldout_spikes], axis=2)[self.trials(split)]

    session = Session()
    calcium = np.ones((9, T, 3), np.float32)
    batch = experiments.session_batch(session, "train", inputs="mixed", calcium=calcium)
    kinds = list(zip(batch.spike_present.tolist(), batch.calcium_present.tolist()))
    assert sorted(set(kinds)) == [(False, True), (True, False), (True, True)] and len(kinds) == 9
    assert (batch.spikes[~batch.spike_present] == 0).all() and (batch.calcium[~batch.calcium_present] == 0).all()
    assert batch.targets.shape == (9, T, 5)
    with pytest.raises(ValueError, match="needs the calcium"):
        experiments.session_batch(session, "train", inputs="paired")
    with pytest.raises(ValueError, match="inputs must be one of"):
        experiments.session_batch(session, "train", inputs="lfp")


def test_ablation_table_has_a_row_per_variant_and_the_removed_pieces_are_gone():
    from tutorial_utils.models.neurofmx import experiments
    from tutorial_utils.runtime import get_profile

    profile = get_profile("quick", nfmx_epochs=1, nfmx_batch_size=6, nfmx_patience=1)
    batch = _batch(calcium=False)
    batch.session = torch.zeros(6, dtype=torch.long)
    batch.spikes = batch.spikes[..., :6]
    config = _config(n_inputs=[6], n_outputs=[8], modalities=("spikes",))
    table, fitted = experiments.run_ablations(batch, batch, batch, 6, config, profile, backbone="ssm")
    assert list(table["variant"]) == list(experiments.VARIANTS)
    assert table.set_index("variant").loc["no encoder head", "co-bps"] != table.loc[0, "co-bps"]  # NaN
    assert math.isnan(table.set_index("variant").loc["no behaviour head", "velocity R^2"])
    assert fitted["no Perceiver (mean of tokens)"][0].encoder.n_latents == 1
    assert fitted["no aggregator (mean of latents)"][0].aggregator is None
    assert "contrastive" not in fitted["no contrastive head"][0].heads
    assert type(fitted["transformer instead of SSM"][0].backbone).__name__ == "TransformerCore"
    assert type(fitted["full model"][0].backbone).__name__ == "MambaBackbone"
