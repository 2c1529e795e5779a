"""A population aggregator (PopT-style): one summary of all units per time step, whatever their order.

Units have no natural order: unit 7 of one session is not unit 7 of another, and shuffling the
columns of a recording changes nothing about the brain. So the summary must be **permutation
invariant**. The recipe (as in set transformers and PopT): per-unit transforms and attention
*between* units (no positional encoding over units, so permuting the inputs permutes the outputs),
then attention pooling by learned queries (a weighted sum over units: order does not matter).

    unit states (B, P, N, D), padding (B, N) -> [self-attention over units] -> pool -> (B, P, D)
"""
from __future__ import annotations

import torch
from torch import nn

from .attention import CrossAttentionBlock


class PopulationAggregator(nn.Module):
    """Permutation-invariant summary of the units of each step.

    Shapes: unit states (B, P, N, D), key_padding_mask (B, N) (True = padding) -> (B, P, D).
    ``n_layers`` blocks of self-attention between units, then ``n_seeds`` learned queries pool.
    """

    def __init__(self, d_model: int, n_layers: int = 1, n_seeds: int = 2, n_heads: int = 2, dropout: float = 0.0):
        super().__init__()
        self.mix = nn.ModuleList(CrossAttentionBlock(d_model, n_heads, dropout) for _ in range(n_layers))
        self.seeds = nn.Parameter(torch.randn(n_seeds, d_model) * 0.02)
        self.pool = CrossAttentionBlock(d_model, n_heads, dropout)
        self.out = nn.Sequential(nn.LayerNorm(n_seeds * d_model), nn.Linear(n_seeds * d_model, d_model))

    def forward(self, units: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        mask = key_padding_mask[:, None, :]  # (B, 1, N): the same units in every step
        for block in self.mix:
            units = block(units, units, mask)  # self-attention: permuting units permutes the outputs
        seeds = self.seeds.expand(*units.shape[:2], -1, -1)  # (B, P, n_seeds, D)
        pooled = self.pool(seeds, units, mask) - seeds  # what the seeds read, without the constant seeds
        return self.out(pooled.flatten(-2))
