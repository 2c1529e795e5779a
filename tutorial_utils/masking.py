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
