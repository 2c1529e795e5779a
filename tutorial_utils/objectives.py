"""What the models are trained to do: the Poisson likelihood of spike counts, on masked entries.

Spike counts are non-negative integers, so we model them as Poisson with the predicted rate.
The negative log-likelihood of a count k under rate r = exp(log_rate) is

    r - k * log_rate + log(k!)

and the last term does not depend on the model, so we drop it.

What is hidden and what is scored is a masking scheme's business (masking.py): the objectives
only ask the scheme, never the model.
"""
from __future__ import annotations

import torch

from .masking import MaskingScheme, TemporalMasking, drop_input_units, make_schemes, mask_time_bins


def masked_poisson_loss(log_rates: torch.Tensor, spikes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean Poisson NLL over the masked bins only (the visible ones would be too easy).

    Args:
        log_rates: (B, T, N) predicted log firing rates (counts per bin).
        spikes: (B, T, N) true counts.
        mask: (B, T) bool, True where the bin was hidden from the model; or (B, T, N) to pick
            individual (bin, neuron) entries (a masking scheme's ``scored``).
    Returns:
        scalar: NLL summed over masked (bin, neuron) pairs / their number.
    """
    log_rates = log_rates.float()  # keep the likelihood in float32 under mixed precision
    nll = torch.exp(log_rates) - spikes * log_rates  # (B, T, N)
    weights = (mask.unsqueeze(-1) if mask.dim() == 2 else mask).expand_as(nll).float()
    return (nll * weights).sum() / weights.sum().clamp(min=1.0)


class MaskedAutoencoding:
    """The pretext task as a training objective: hide part of the batch, predict it, score with the Poisson NLL.

    What is hidden comes from masking schemes (masking.py): by default Notebook 1's temporal
    scheme with ``mask_ratio`` and ``mask_fn``; ``schemes`` (names or scheme objects, e.g. "mtm")
    replaces it, and then one scheme is drawn per batch. ``mask_fn`` and ``loss_fn`` are swappable
    so the notebooks can plug in the learner's own. ``input_dropout`` > 0 also hides a random
    fraction of each trial's input units for all bins while training (masking.drop_input_units;
    never in eval mode): a regulariser that matters with few trials (on 75 real MC_Maze trials,
    0.3 raised co-bps from 0.115 to 0.134).
    Call signature is the one ``training.train`` expects: ``objective(model, batch, generator)``
    with ``batch`` a :class:`~tutorial_utils.batches.Batch`.
    """

    def __init__(self, mask_ratio: float = 0.2, mask_fn=mask_time_bins, loss_fn=masked_poisson_loss,
                 input_dropout: float = 0.0, schemes=None, prompts: bool = False):
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        self.mask_ratio = mask_ratio
        self.mask_fn = mask_fn
        self.loss_fn = loss_fn
        self.input_dropout = input_dropout
        self.schemes = make_schemes(schemes) if schemes is not None else [TemporalMasking(mask_ratio, mask_fn)]
        self.prompts = prompts

    def draw_scheme(self, generator: torch.Generator | None) -> MaskingScheme:
        """One scheme per batch, uniformly (with a single scheme no random number is used, so
        temporal-only training draws exactly the masks it always did)."""
        if len(self.schemes) == 1:
            return self.schemes[0]
        return self.schemes[int(torch.randint(len(self.schemes), (1,), generator=generator))]

    def hide(self, model, batch, generator: torch.Generator | None):
        """The drawn scheme's :class:`~tutorial_utils.masking.Masked` (while training, with input units dropped too)."""
        masked = self.draw_scheme(generator)(batch, generator)
        if model.training and self.input_dropout > 0:
            masked.inputs = drop_input_units(masked.inputs, self.input_dropout, generator)
        return masked

    def forward(self, model, batch, masked) -> torch.Tensor:
        """The model's log-rates on the masked inputs (causal attention only when the scheme asks)."""
        return model(masked.inputs, causal=True) if masked.causal else model(masked.inputs)

    def __call__(self, model, batch, generator: torch.Generator | None = None) -> torch.Tensor:
        masked = self.hide(model, batch, generator)
        # Notebook 1's loss takes the (B, T) hidden bins; for one session of all-input units those
        # are exactly the scored entries.
        mask = masked.hidden_bins if masked.hidden_bins is not None and batch.targets is None else masked.scored
        return self.loss_fn(self.forward(model, batch, masked), batch.target_counts, mask)


class StitchedMaskedAutoencoding(MaskedAutoencoding):
    """Masked autoencoding for NDT1-stitch on padded multi-session batches.

    ``batch``: ``spikes`` (B, T, max N_in) inputs, ``targets`` (B, T, max N_out), ``session`` (B,),
    and ``unit_exists`` / ``unit_is_input`` (B, max N_out) (see batches.py; api builds them). With
    the temporal scheme, input units are scored on the masked bins; output units that are never
    inputs (NLB's held-out units) are scored on every bin, which teaches the model to predict them
    from the others (co-smoothing); padding is never scored. With ``prompts=True`` the model is
    given each batch's scheme id as its prompt token.
    """

    def forward(self, model, batch, masked) -> torch.Tensor:
        options = {"causal": True} if masked.causal else {}
        if self.prompts:
            options["prompt"] = torch.full((len(batch),), masked.scheme, dtype=torch.long, device=batch.spikes.device)
        return model(masked.inputs, batch.session, **options)

    def __call__(self, model, batch, generator: torch.Generator | None = None) -> torch.Tensor:
        masked = self.hide(model, batch, generator)
        return self.loss_fn(self.forward(model, batch, masked), batch.target_counts, masked.scored)
