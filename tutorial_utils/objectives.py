"""What the models are trained to do: the Poisson likelihood of spike counts, on masked bins.

Spike counts are non-negative integers, so we model them as Poisson with the predicted rate.
The negative log-likelihood of a count k under rate r = exp(log_rate) is

    r - k * log_rate + log(k!)

and the last term does not depend on the model, so we drop it.
"""
from __future__ import annotations

import torch

from .masking import drop_input_units, mask_time_bins


def masked_poisson_loss(log_rates: torch.Tensor, spikes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean Poisson NLL over the masked bins only (the visible ones would be too easy).

    Args:
        log_rates: (B, T, N) predicted log firing rates (counts per bin).
        spikes: (B, T, N) true counts.
        mask: (B, T) bool, True where the bin was hidden from the model; or (B, T, N) to pick
            individual (bin, neuron) entries (used by the stitched models).
    Returns:
        scalar: NLL summed over masked (bin, neuron) pairs / their number.
    """
    log_rates = log_rates.float()  # keep the likelihood in float32 under mixed precision
    nll = torch.exp(log_rates) - spikes * log_rates  # (B, T, N)
    weights = (mask.unsqueeze(-1) if mask.dim() == 2 else mask).expand_as(nll).float()
    return (nll * weights).sum() / weights.sum().clamp(min=1.0)


class MaskedAutoencoding:
    """The pretext task as a training objective: mask bins, predict them, score with the Poisson NLL.

    ``mask_fn`` and ``loss_fn`` are swappable so the notebooks can plug in the learner's own.
    ``input_dropout`` > 0 also hides a random fraction of each trial's input units for all bins
    while training (masking.drop_input_units; never in eval mode): a regulariser that matters
    with few trials (on 75 real MC_Maze trials, 0.3 raised co-bps from 0.115 to 0.134).
    Call signature is the one ``training.train`` expects: ``objective(model, batch, generator)``
    with ``batch`` a :class:`~tutorial_utils.batches.Batch` (only ``batch.spikes`` is used).
    """

    def __init__(self, mask_ratio: float = 0.2, mask_fn=mask_time_bins, loss_fn=masked_poisson_loss,
                 input_dropout: float = 0.0):
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        self.mask_ratio = mask_ratio
        self.mask_fn = mask_fn
        self.loss_fn = loss_fn
        self.input_dropout = input_dropout

    def hide(self, model, inputs: torch.Tensor, generator: torch.Generator | None):
        """Mask bins of ``inputs`` (and, while training, drop input units): (masked inputs, mask (B, T))."""
        masked_inputs, mask = self.mask_fn(inputs, self.mask_ratio, generator)
        if model.training and self.input_dropout > 0:
            masked_inputs = drop_input_units(masked_inputs, self.input_dropout, generator)
        return masked_inputs, mask

    def __call__(self, model, batch, generator: torch.Generator | None = None) -> torch.Tensor:
        spikes = batch.spikes
        masked_spikes, mask = self.hide(model, spikes, generator)
        return self.loss_fn(model(masked_spikes), spikes, mask)


class StitchedMaskedAutoencoding(MaskedAutoencoding):
    """Masked autoencoding for NDT1-stitch on padded multi-session batches.

    ``batch``: ``spikes`` (B, T, max N_in) inputs, ``targets`` (B, T, max N_out), ``session`` (B,). Input units are
    scored on the masked bins, as above; output units that are never inputs (NLB's held-out
    units) are scored on every bin, which teaches the model to predict them from the others
    (co-smoothing); padding is never scored.
    """

    def __call__(self, model, batch, generator: torch.Generator | None = None) -> torch.Tensor:
        inputs, targets, session = batch.spikes, batch.target_counts, batch.session
        masked_inputs, mask = self.hide(model, inputs, generator)  # mask: (B, T)
        is_input = model.input_mask(session)[:, None, :]  # (B, 1, N_out)
        exists = model.output_mask(session)[:, None, :]
        scored = exists & (~is_input | mask[:, :, None])  # (B, T, N_out)
        return self.loss_fn(model(masked_inputs, session), targets, scored)
