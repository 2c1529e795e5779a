"""Notebook 4B's experiments as functions, so the notebook and the benchmark run the same code.

* :func:`session_batch` — one MC_Maze session's split as a :class:`MultimodalBatch` (spikes,
  calcium, or a mix of spike-only / calcium-only / paired trials).
* :func:`make_backbone` — the injected backbone by name: "transformer" (NDT1's core) or "ssm" (Mamba).
* :func:`fit_neurofmx` / :func:`fit_adapter` — training through the course's one loop (training.train).
* :func:`evaluate` — co-bps (bits per spike of the held-out units) and velocity R^2 on test trials.
* :func:`run_ablations` — the table "what does each piece buy".
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ... import metrics
from ...runtime import autocast, autocast_dtype
from ...training import History, train
from .adapters import freeze_all_but_session, set_baseline_rates
from .model import NeuroFMX, NeuroFMXConfig
from .objective import MultimodalBatch, NeuroFMXObjective, model_inputs

INPUT_KINDS = ("spikes", "calcium", "paired", "mixed")


def behaviour_scale(session, split: str = "train") -> np.ndarray:
    """Per-dimension standard deviation of hand velocity on ``split``'s trials: (2,). The model
    predicts velocity / scale, so its behaviour loss is on the same footing as the others."""
    return session.hand_vel[session.trials(split)].reshape(-1, 2).std(axis=0)


def session_batch(session, split: str, *, index: int = 0, scale: np.ndarray | None = None,
                  inputs: str = "spikes", calcium: np.ndarray | None = None, seed: int = 0) -> MultimodalBatch:
    """Trials of ``split`` of one MazeSession as a batch for NeuroFMX.

    inputs: "spikes" (held-in spikes), "calcium" (held-in fluorescence only), "paired" (both), or
        "mixed" (each trial at random a third spike-only, calcium-only or paired; seeded).
    calcium: (all trials, T, N_in) fluorescence of the held-in units, needed unless inputs="spikes".
    targets are all units' counts (held-in then held-out); behaviour is hand velocity / ``scale``.
    """
    if inputs not in INPUT_KINDS:
        raise ValueError(f"inputs must be one of {INPUT_KINDS}, got {inputs!r}")
    if inputs != "spikes" and calcium is None:
        raise ValueError(f"inputs={inputs!r} needs the calcium fluorescence (trials, T, N_in) of the session")
    trials = session.trials(split)
    n = len(trials)
    spikes = torch.as_tensor(session.heldin_spikes[trials])
    scale = behaviour_scale(session) if scale is None else scale
    kind = {"spikes": np.zeros(n, int), "calcium": np.ones(n, int), "paired": np.full(n, 2)}.get(inputs)
    if kind is None:  # mixed: 0 spike-only, 1 calcium-only, 2 paired
        kind = np.random.default_rng(seed).permutation(np.arange(n) % 3)
    has_spikes, has_calcium = torch.as_tensor(kind != 1), torch.as_tensor(kind != 0)
    fluorescence = None
    if inputs != "spikes":
        fluorescence = torch.as_tensor(np.asarray(calcium)[trials], dtype=torch.float32) * has_calcium[:, None, None]
    targets = torch.as_tensor(session.all_spikes(split))
    held_in = torch.arange(targets.shape[2]) < spikes.shape[2]  # NLB order: held-in units first
    return MultimodalBatch(
        spikes * has_spikes[:, None, None], targets=targets,
        unit_exists=torch.ones(n, targets.shape[2], dtype=torch.bool), unit_is_input=held_in.expand(n, -1).clone(),
        session=torch.full((n,), index, dtype=torch.long),
        behaviour=torch.as_tensor(session.hand_vel[trials] / scale, dtype=torch.float32),
        calcium=fluorescence, spike_present=has_spikes, calcium_present=has_calcium if inputs != "spikes" else None)


@dataclass
class MazeSplits:
    """One session's batches for Notebook 4B: ``fit`` / ``stop`` (training trials, the last
    ``stop_fraction`` held back for early stopping) and ``test`` (NLB's val trials); velocity scaled
    by the training trials' standard deviation ``scale``."""

    fit: MultimodalBatch
    stop: MultimodalBatch
    test: MultimodalBatch
    n_heldin: int
    scale: np.ndarray


def maze_splits(session, *, index: int = 0, inputs: str = "spikes", calcium=None, stop_fraction: float = 0.2,
                seed: int = 0) -> MazeSplits:
    """:class:`MazeSplits` of a MazeSession (``inputs``/``calcium`` as in :func:`session_batch`)."""
    scale = behaviour_scale(session)
    train_batch = session_batch(session, "train", index=index, scale=scale, inputs=inputs, calcium=calcium, seed=seed)
    n_stop = max(1, round(stop_fraction * len(train_batch)))
    n_fit = len(train_batch) - n_stop
    return MazeSplits(fit=train_batch[slice(0, n_fit)], stop=train_batch[slice(n_fit, None)],
                      test=session_batch(session, "val", index=index, scale=scale, inputs=inputs, calcium=calcium,
                                         seed=seed + 1),
                      n_heldin=session.heldin_spikes.shape[2], scale=scale)


# Fixed task weights that put the heads' *improvements* on one scale: a good model beats the
# mean-rate Poisson NLL (~0.8 per entry) by only a few hundredths, while the velocity MSE falls from
# ~1 and the InfoNCE from ~log(256) by whole units. Summed with equal (or uncertainty-learned) weights,
# the rate heads barely steer the shared layers, and in a short run the rates stay near the mean
# (quick profile, full model: co-bps 0.04 with uncertainty weighting, 0.10 with these weights).
TASK_WEIGHTS = {"encoder": 30.0, "forecast": 10.0, "behaviour": 1.0, "contrastive": 0.1}


def default_config(session, profile, **change) -> NeuroFMXConfig:
    """Notebook 4B's model for one MazeSession, sized by the profile (fixed :data:`TASK_WEIGHTS`)."""
    base = dict(n_inputs=[session.heldin_spikes.shape[2]], n_outputs=[session.all_spikes().shape[2]],
                d_model=profile.nfmx_d_model, n_latents=profile.nfmx_latents, weighting="fixed",
                loss_weights=dict(TASK_WEIGHTS))
    return NeuroFMXConfig(**{**base, **change})


def make_backbone(kind: str, d_model: int, n_steps: int, n_layers: int = 1, dropout: float = 0.1,
                  d_state: int = 16, expand: int = 2) -> torch.nn.Module:
    """The backbone to inject: "transformer" (NDT1's TransformerCore) or "ssm" (a bidirectional MambaBackbone).

    ``n_steps``: the longest sequence the backbone sees (patches per trial); the SSM has no limit.
    ``d_state`` / ``expand``: the SSM's state size per channel and inner width (mamba-ssm's defaults;
    :data:`SMALL_DATA_SSM` is smaller); the transformer ignores them.
    """
    if kind == "transformer":
        from ..ndt1 import TransformerCore
        return TransformerCore(d_model, n_steps, n_layers, n_heads=2, dropout=dropout)
    if kind == "ssm":
        from ..mamba import MambaBackbone, MambaConfig
        # bidirectional: like the transformer, every patch may use the whole (masked) trial
        return MambaBackbone(MambaConfig(d_model=d_model, n_layers=n_layers, dropout=dropout, bidirectional=True,
                                         d_state=d_state, expand=expand))
    raise ValueError(f"backbone must be 'transformer' or 'ssm', got {kind!r}")


def build_model(config: NeuroFMXConfig, backbone: str, n_steps: int, seed: int = 0, **backbone_options) -> NeuroFMX:
    """A freshly initialised NeuroFMX (seeded) with the named backbone injected (``backbone_options``:
    :func:`make_backbone`'s d_state / expand)."""
    torch.manual_seed(seed)
    return NeuroFMX(config, make_backbone(backbone, config.d_model, n_steps, dropout=config.dropout, **backbone_options))


# NeuroFMX for co-smoothing one small session: ~60 training trials and no behaviour, as the real-data
# yardstick (yardstick.py). Notebook 4B's configuration overfits there. Measured on the yardstick (full
# profile, co-bps of seeds 0 / 1 / 2, rates unsmoothed; docs/neurofmx_yardstick.md): the notebook's
# configuration 0.074 / 0.049 / 0.046; encoder head alone, dropout 0.3 and this SSM, with the
# Perceiver's 8 latents 0.056 / 0.049 / 0.063, with the tokens mean-pooled instead 0.100 / 0.098 /
# 0.074. The forecast head costs about 0.015 (mean-pooled: 0.080 / 0.066 / 0.083); mamba-ssm's
# default SSM (16 states, 2x wide) overfits 60 trials (Perceiver: 0.033 / 0.010 / 0.054).
SMALL_DATA_CONFIG = dict(use_perceiver=False, dropout=0.3, heads=("encoder",), weighting="fixed",
                         loss_weights={"encoder": TASK_WEIGHTS["encoder"]})
SMALL_DATA_SSM = dict(d_state=4, expand=1)


def fit_neurofmx(model: NeuroFMX, train_batch, val_batch, profile, *, objective=None, epochs: int | None = None,
                 seed: int = 0, progress: bool = False, desc: str = "NeuroFMX", select_on: str | None = None) -> History:
    """Train ``model`` with training.train and the profile's Notebook 4B recipe (by default the
    objective hides ``profile.nfmx_input_dropout`` of the input units too); returns the history.

    ``select_on``: the validation loss that decides early stopping and the weights kept; by default
    the encoder's (co-smoothing) loss when the model trains that head, else the weighted total. The
    total is the wrong judge of the rates: on the real yardstick (no behaviour: encoder + forecast
    heads) the forecast term, weighted 10, made the total lowest after the first epoch, so training
    stopped ten epochs later and kept the first epoch's weights.
    """
    objective = objective or NeuroFMXObjective(input_dropout=profile.nfmx_input_dropout)
    if select_on is None:
        trained = objective.tasks or model.config.heads
        select_on = "encoder" if "encoder" in trained else "total"
    return train(model, train_batch, val_batch, objective,
                 epochs=epochs or profile.nfmx_epochs, batch_size=profile.nfmx_batch_size, lr=profile.nfmx_lr,
                 patience=profile.nfmx_patience, select_on=select_on, seed=seed, progress=progress, desc=desc)


def fit_adapter(model: NeuroFMX, session: int, train_batch, val_batch, profile, *, seed: int = 0,
                tasks: tuple[str, ...] = ("encoder", "forecast"), progress: bool = False) -> History:
    """Fit only session ``session``'s unit-ID adapter and stitcher entry (everything else frozen),
    self-supervised by default (no behaviour needed). Returns the history; unfreezes afterwards."""
    freeze_all_but_session(model, session)
    try:
        return train(model, train_batch, val_batch, NeuroFMXObjective(tasks=tasks), epochs=profile.nfmx_adapter_epochs,
                     batch_size=profile.nfmx_batch_size, lr=profile.nfmx_adapter_lr, weight_decay=0.0,
                     patience=profile.nfmx_patience, seed=seed, progress=progress, desc="adapter")
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(True)


@torch.no_grad()
def predict(model: NeuroFMX, batch, batch_size: int = 64, drop: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Every bin visible, eval mode: {"rates": (B, T, N_out), "behaviour": (B, T, d), "embedding": (B, P, E)}
    as float32 CPU tensors (None for a head the model lacks). ``drop``: modalities to withhold
    ("spikes", "calcium"), as if they had not been recorded."""
    model.eval()
    device = next(model.parameters()).device
    parts = {"rates": [], "behaviour": [], "embedding": []}
    with autocast(device, autocast_dtype(device)):
        for start in range(0, len(batch), batch_size):
            inputs = model_inputs(batch[slice(start, start + batch_size)].to(device))
            for modality in drop:
                inputs[modality] = None
                inputs["spike_present" if modality == "spikes" else "calcium_present"] = None
            out = model(**inputs)
            parts["rates"].append(None if out.log_rates is None else out.log_rates.float().exp().cpu())
            parts["behaviour"].append(None if out.behaviour is None else out.behaviour.float().cpu())
            parts["embedding"].append(None if out.embedding is None else out.embedding.float().cpu())
    return {name: None if values[0] is None else torch.cat(values) for name, values in parts.items()}


def evaluate(model: NeuroFMX, batch, n_heldin: int, drop: tuple[str, ...] = ()) -> dict[str, float]:
    """co-bps: bits per spike of the held-out units (never inputs, so every bin is fair game);
    velocity R^2 of the behaviour head. NaN for a head the model lacks. ``drop`` as in :func:`predict`."""
    out = predict(model, batch, drop=drop)
    heldout = batch.target_counts[..., n_heldin:]
    co_bps = metrics.bits_per_spike(out["rates"][..., n_heldin:], heldout) if out["rates"] is not None else float("nan")
    r2 = metrics.r2_score(out["behaviour"], batch.behaviour) if out["behaviour"] is not None else float("nan")
    return {"co-bps": co_bps, "velocity R^2": r2}


VARIANTS = {
    "full model": {},
    "no Perceiver (mean of tokens)": {"use_perceiver": False},
    "no aggregator (mean of latents)": {"use_aggregator": False},
    "no encoder head": {"drop_head": "encoder"},
    "no behaviour head": {"drop_head": "behaviour"},
    "no contrastive head": {"drop_head": "contrastive"},
    "no forecast head": {"drop_head": "forecast"},
    "transformer instead of SSM": {"backbone": "transformer"},
}


def variant_config(config: NeuroFMXConfig, change: dict) -> tuple[NeuroFMXConfig, str | None]:
    """(config for one ablation, backbone override or None)."""
    change = dict(change)
    backbone = change.pop("backbone", None)
    drop = change.pop("drop_head", None)
    if drop is not None:
        change["heads"] = tuple(h for h in config.heads if h != drop)
        change["loss_weights"] = {k: v for k, v in config.loss_weights.items() if k != drop}
    return replace(config, **change), backbone


def run_ablations(train_batch, val_batch, test_batch, n_heldin: int, config: NeuroFMXConfig, profile, *,
                  backbone: str | None = None, variants: list[str] | None = None, seed: int = 0,
                  progress: bool = False):
    """Train each variant of :data:`VARIANTS` the same way; score it on ``test_batch``.

    backbone: of the full model; default "ssm" when the package has it, else "transformer" (then the
        "transformer instead of SSM" row is skipped: it would be the full model again).
    Returns (pandas DataFrame, one row per variant: co-bps, velocity R^2, s/epoch, epochs, parameters;
    dict variant -> (model, history)).
    """
    import pandas as pd

    backbone = backbone or "ssm"
    names = variants or [v for v in VARIANTS if not (v == "transformer instead of SSM" and backbone == "transformer")]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    n_steps = train_batch.spikes.shape[1] // config.patch_bins
    rows, fitted = [], {}
    for name in names:
        variant, backbone_override = variant_config(config, VARIANTS[name])
        model = build_model(variant, backbone_override or backbone, n_steps, seed)
        set_baseline_rates(model, 0, train_batch.target_counts)
        start = time.perf_counter()
        history = fit_neurofmx(model, train_batch, val_batch, profile, seed=seed, progress=progress, desc=name)
        seconds = time.perf_counter() - start
        scores = evaluate(model, test_batch, n_heldin)
        rows.append({"variant": name, "backbone": backbone_override or backbone,
                     "co-bps": round(scores["co-bps"], 4), "velocity R^2": round(scores["velocity R^2"], 3),
                     "s / epoch": round(seconds / max(len(history.train_loss), 1), 2),
                     "epochs": len(history.train_loss), "parameters": sum(p.numel() for p in model.parameters())})
        fitted[name] = (model, history)
    return pd.DataFrame(rows), fitted
