"""NeuroFMX's training objective: hide bins, run every head, one weighted loss.

Per batch: a random 20% of bins *and* the last ``forecast_bins`` bins are hidden from the input
(masking.py's temporal scheme with ``tail_bins``, the masking interface every notebook uses; which
units exist and which are inputs come from the batch, ``masking.unit_roles``). Then each built
head adds its named loss:

* "encoder":     Poisson NLL of the hidden bins of input units and of every bin of output-only units
                 (objectives.masked_poisson_loss; trials without spikes are not scored);
* "forecast":    Poisson NLL of the hidden tail, forecast from the last fully visible patch;
* "behaviour":   mean squared error of the (standardised) behaviour, every bin;
* "contrastive": InfoNCE over a sample of (trial, patch) embeddings, positives chosen CEBRA-style
                 (closest mean behaviour, or the next patch of the same trial with ``contrastive="time"``).

The model's :class:`~.losses.MultiTaskLoss` weighs them into "total"; training.train logs each part.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ...batches import Batch
from ...masking import Masked, TemporalMasking, drop_input_units, unit_roles
from ...objectives import masked_poisson_loss
from .heads import behaviour_positives, info_nce

CONTRASTIVE_MODES = ("behaviour", "time")


@dataclass
class MultimodalBatch(Batch):
    """A :class:`~tutorial_utils.batches.Batch` with a second modality and who has what.

    spikes (B, T, N_in) counts (zeros where a trial has no spikes); targets (B, T, N_out) counts to
    predict; calcium (B, T, N_in) dF/F (zeros where absent); spike_present / calcium_present (B,) bool.
    """

    calcium: torch.Tensor | None = None
    spike_present: torch.Tensor | None = None
    calcium_present: torch.Tensor | None = None


def model_inputs(batch: Batch, spikes=None, calcium=None) -> dict:
    """The keyword arguments of NeuroFMX.forward for ``batch`` (optionally with replaced inputs)."""
    get = lambda name: getattr(batch, name, None)  # noqa: E731  (a plain Batch has no calcium fields)
    return dict(spikes=batch.spikes if spikes is None else spikes, session=batch.session,
                calcium=get("calcium") if calcium is None else calcium,
                spike_present=get("spike_present"), calcium_present=get("calcium_present"))


class NeuroFMXObjective:
    """``objective(model, batch, generator) -> {"encoder": ..., ..., "total": ...}`` for training.train.

    ``tasks``: the losses to compute (default: every head the model has); e.g. ("encoder", "forecast")
    to adapt to a session without behaviour. ``input_dropout``: while training, also hide this
    fraction of each trial's input units for all bins (masking.drop_input_units, as NDT1-stitch's
    recipe does), so the rates cannot lean on a few units of a few dozen trials.
    """

    def __init__(self, mask_ratio: float = 0.2, contrastive: str = "behaviour", temperature: float = 0.1,
                 contrastive_samples: int = 256, tasks: tuple[str, ...] | None = None, input_dropout: float = 0.0):
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        self.input_dropout = input_dropout
        if contrastive not in CONTRASTIVE_MODES:
            raise ValueError(f"contrastive must be one of {CONTRASTIVE_MODES}, got {contrastive!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.mask_ratio, self.contrastive, self.temperature = mask_ratio, contrastive, temperature
        self.contrastive_samples, self.tasks = contrastive_samples, tasks

    def hide(self, batch: Batch, forecast_bins: int, generator) -> tuple[Masked, torch.Tensor | None]:
        """The temporal scheme's :class:`~tutorial_utils.masking.Masked` (random bins + the forecast
        tail hidden) and the calcium input with the same bins zeroed (None without calcium)."""
        masked = TemporalMasking(self.mask_ratio, tail_bins=forecast_bins)(batch, generator)
        calcium = getattr(batch, "calcium", None)
        calcium = calcium.masked_fill(masked.hidden_bins[..., None], 0.0) if calcium is not None else None
        return masked, calcium

    def __call__(self, model, batch: Batch, generator: torch.Generator | None = None) -> dict:
        tasks = self.tasks or model.config.heads
        missing = [t for t in tasks if t not in model.heads]
        if missing:
            raise ValueError(f"tasks {missing} need heads the model does not have ({list(model.heads)})")
        if ("behaviour" in tasks or ("contrastive" in tasks and self.contrastive == "behaviour")) \
                and batch.behaviour is None:
            raise ValueError("the behaviour and behaviour-contrastive losses need batch.behaviour (trials, T, d)")
        k = model.config.forecast_bins
        masked, calcium = self.hide(batch, k if "forecast" in tasks else 0, generator)
        if model.training and self.input_dropout > 0:
            masked.inputs = drop_input_units(masked.inputs, self.input_dropout, generator)
        out = model(**model_inputs(batch, masked.inputs, calcium))
        targets = batch.target_counts  # (B, T, W): W may be narrower than the model's widest session
        width = targets.shape[2]
        exists, _ = unit_roles(batch)  # (B, W)
        has_spikes = getattr(batch, "spike_present", None)
        if has_spikes is not None:  # no spikes recorded in a trial: nothing of it to score
            exists = exists & has_spikes[:, None].bool()

        losses = {}
        if "encoder" in tasks:  # hidden bins of input units, every bin of output-only units
            scored = masked.scored & exists[:, None, :]
            losses["encoder"] = masked_poisson_loss(out.log_rates[..., :width], targets, scored)
        if "forecast" in tasks:
            last_seen = out.forecast.shape[1] - k // model.config.patch_bins - 1  # the last visible patch
            forecast = out.forecast[:, last_seen, :width].transpose(1, 2)  # (B, k, W): the k hidden bins after it
            losses["forecast"] = masked_poisson_loss(forecast, targets[:, -k:], exists[:, None].expand(-1, k, -1))
        if "behaviour" in tasks:
            losses["behaviour"] = F.mse_loss(out.behaviour.float(), batch.behaviour.float())
        if "contrastive" in tasks:
            behaviour = batch.behaviour.unflatten(1, (out.embedding.shape[1], -1)).mean(2) \
                if batch.behaviour is not None else None  # (B, P, d): each patch's mean behaviour
            losses["contrastive"] = self.contrastive_loss(out.embedding, behaviour, generator)
        return model.task_loss(losses)

    def contrastive_loss(self, embedding: torch.Tensor, behaviour: torch.Tensor | None, generator) -> torch.Tensor:
        """InfoNCE on a random sample of (trial, step) embeddings (B, P, E), behaviour (B, P, d); positives CEBRA-style."""
        if self.contrastive == "time":  # positive: the same trial one step later
            anchors, positives = embedding[:, :-1].flatten(0, 1), embedding[:, 1:].flatten(0, 1)
        else:
            anchors = embedding.flatten(0, 1)
            positives = anchors[behaviour_positives(behaviour.flatten(0, 1))]
        pick = torch.randperm(len(anchors), generator=generator)[: self.contrastive_samples].to(anchors.device)
        return info_nce(anchors[pick], positives[pick], self.temperature)
