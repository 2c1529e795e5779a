"""Masking for the masked-autoencoding pretext task.

NDT1 hides whole tokens. With one token per time bin, a token is all neurons at one time bin, so
masking a token means zeroing that bin for every neuron; the model must predict it from context.
"""
from __future__ import annotations

import torch


def mask_time_bins(
    spikes: torch.Tensor, mask_ratio: float = 0.2, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero a random ``mask_ratio`` of the time bins of every trial.

    Args:
        spikes: (trials, time bins, neurons) counts.
        mask_ratio: fraction of time bins hidden per trial (rounded, at least one bin).
        generator: for reproducible masks.

    Returns:
        masked_spikes: same shape, with the chosen bins set to 0 for all neurons.
        mask: (trials, time bins) bool, True where a bin was hidden.
    """
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be strictly between 0 and 1, got {mask_ratio}")
    n_trials, n_bins, _ = spikes.shape
    n_masked = max(1, round(mask_ratio * n_bins))
    # Rank uniform noise per trial: the n_masked smallest scores are masked (exactly n per trial).
    scores = torch.rand(n_trials, n_bins, generator=generator).to(spikes.device)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    mask = ranks < n_masked
    masked_spikes = spikes.masked_fill(mask.unsqueeze(-1), 0.0)
    return masked_spikes, mask


def drop_input_units(
    spikes: torch.Tensor, drop_ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero a random ``drop_ratio`` of each trial's units for *all* its bins; scale the rest up by
    1 / (1 - drop_ratio) so the summed input keeps its size.

    A regulariser for small datasets: the model cannot lean on any one unit, so it must infer the
    population state from whichever units it is shown (the targets stay complete).

    Args:
        spikes: (trials, time bins, units) inputs.
        drop_ratio: fraction of units dropped per trial, in [0, 1); 0 returns ``spikes`` unchanged.
    Returns:
        (trials, time bins, units) inputs with the dropped units zeroed.
    """
    if not 0.0 <= drop_ratio < 1.0:
        raise ValueError(f"drop_ratio must be in [0, 1), got {drop_ratio}")
    if drop_ratio == 0.0:
        return spikes
    n_trials, _, n_units = spikes.shape
    keep = torch.rand(n_trials, 1, n_units, generator=generator).to(spikes.device) >= drop_ratio
    return spikes * keep.to(spikes.dtype) / (1.0 - drop_ratio)
