"""Attention with a key-padding mask, written out, and the residual block built on it.

Both ends of the Perceiver (latents reading unit tokens; unit queries reading latents) and the
population aggregator are one operation: a set of *queries* reads a set of *keys/values*,

    weights = softmax(q k^T / sqrt(d))  over the keys,   output = weights @ v

with padded keys (units a session does not have, a missing modality) given zero weight.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def cross_attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                    key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention of ``queries`` over ``keys``/``values``.

    Args:
        queries: (..., Q, d); keys: (..., K, d); values: (..., K, d_v); the leading dims broadcast.
        key_padding_mask: (..., K) bool, True for keys that must get no weight (padding), or None.
    Returns:
        (..., Q, d_v): for each query, the attention-weighted average of the values.
    """
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(queries.shape[-1])  # (..., Q, K)
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[..., None, :], float("-inf"))
    return scores.softmax(dim=-1) @ values


def fast_cross_attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                         key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`cross_attention` computed by PyTorch's fused kernel (same numbers, faster; the default)."""
    allowed = ~key_padding_mask[..., None, :] if key_padding_mask is not None else None
    return nn.functional.scaled_dot_product_attention(queries, keys, values, attn_mask=allowed)


class CrossAttentionBlock(nn.Module):
    """Pre-norm multi-head cross-attention + MLP, both residual: queries (..., Q, D), tokens (..., K, D),
    key_padding_mask (..., K) -> updated queries (..., Q, D).

    ``attention_fn`` is the attention itself (:func:`fast_cross_attention` by default, equal to the
    readable :func:`cross_attention`); the notebook swaps in the learner's version.
    ``norm_tokens=False`` reads the tokens as they are, without a LayerNorm: where a token's *size*
    is information (a unit token scales with the unit's activity), normalising it would erase it.
    """

    def __init__(self, d_model: int, n_heads: int = 2, dropout: float = 0.0, ff_mult: int = 2,
                 norm_tokens: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.norm_queries, self.norm_mlp = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.norm_tokens = nn.LayerNorm(d_model) if norm_tokens else nn.Identity()
        self.to_q, self.to_k, self.to_v = (nn.Linear(d_model, d_model) for _ in range(3))
        self.to_out = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), nn.GELU(), nn.Linear(ff_mult * d_model, d_model))
        self.dropout = nn.Dropout(dropout)
        self.attention_fn = fast_cross_attention

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:  # (..., S, D) -> (..., H, S, D / H)
        return x.unflatten(-1, (self.n_heads, -1)).transpose(-3, -2)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.norm_tokens(tokens)
        q = self._split_heads(self.to_q(self.norm_queries(queries)))
        k, v = self._split_heads(self.to_k(tokens)), self._split_heads(self.to_v(tokens))
        mask = key_padding_mask[..., None, :] if key_padding_mask is not None else None  # same for every head
        attended = self.attention_fn(q, k, v, mask).transpose(-3, -2).flatten(-2)  # (..., Q, D)
        queries = queries + self.dropout(self.to_out(attended))
        return queries + self.dropout(self.mlp(self.norm_mlp(queries)))
