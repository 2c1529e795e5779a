"""Perceiver-IO: a fixed set of learned latents reads the unit tokens of each time step; output queries read back.

Sessions differ in how many units (tokens) they have; a backbone wants a fixed width. The
Perceiver's answer is a *bottleneck*: L learned latent vectors cross-attend over however many
unit tokens a step has (padding masked), so every step becomes L latents whatever the session.

    unit tokens (B, P, N, D) --L latents attend--> latents (B, P, L, D) --fold--> (B, P, D)
        --backbone over time--> (B, P, D) --unfold + residual--> latents (B, P, L, D)
    output queries (B, N_out, D) --attend over the patch's latents--> unit states (B, P, N_out, D)

P is the number of time steps the backbone sees (bins, or patches of bins: tokenizers.py). The
backbone (transformer or SSM) is injected: it only ever sees (B, P, D), one vector per step.
:class:`MeanPoolEncoder` is the ablation without latents: the masked mean of the tokens.
"""
from __future__ import annotations

import torch
from torch import nn

from ..ndt1 import sinusoidal_positional_encoding
from .attention import CrossAttentionBlock


class PerceiverEncoder(nn.Module):
    """L learned latents cross-attend over the unit tokens of every step.

    Shapes: tokens (B, P, N, D), key_padding_mask (B, N) (True = padding) -> latents (B, P, L, D).
    """

    def __init__(self, d_model: int, n_latents: int = 8, n_heads: int = 2, dropout: float = 0.0):
        super().__init__()
        self.n_latents = n_latents
        self.latents = nn.Parameter(torch.randn(n_latents, d_model) * 0.02)
        # tokens un-normalised: a unit token is unit_embedding * value_encoding, so its size says how
        # active the unit was; a LayerNorm per token would erase that (and trains several times slower)
        self.read = CrossAttentionBlock(d_model, n_heads, dropout, norm_tokens=False)

    def forward(self, tokens: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        n_trials, n_steps = tokens.shape[:2]
        queries = self.latents.expand(n_trials, n_steps, -1, -1)  # the same L queries in every step
        return self.read(queries, tokens, key_padding_mask[:, None, :])


class MeanPoolEncoder(nn.Module):
    """The no-Perceiver ablation: one "latent" per step, the mean of the real tokens.

    Shapes: tokens (B, P, N, D), key_padding_mask (B, N) -> (B, P, 1, D).
    """

    n_latents = 1

    def forward(self, tokens: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        real = (~key_padding_mask).to(tokens.dtype)[:, None, :, None]  # (B, 1, N, 1)
        return ((tokens * real).sum(2) / real.sum(2).clamp(min=1.0))[:, :, None, :]


class LatentBackbone(nn.Module):
    """Runs the injected backbone over time on the latents: (B, P, L, D) -> (B, P, L, D).

    The L latents of a step are folded into one D-vector (a linear map), the backbone mixes steps,
    and the result is unfolded and added back to each latent (residual), so the latents keep what
    they read in their own step and gain the temporal context.

    ``positions``: add a sinusoidal code of the step index to the folded vectors, so the backbone
    knows *where in the trial* a step is (an SSM, unlike NDT1's transformer core, has no positions
    of its own). In trial-aligned data that is a strong cue: on the real-data yardstick the
    trial-averaged rates alone score 0.055 co-bps. Turn it off for windows cut at arbitrary
    points from a continuous recording, where the index means nothing.
    """

    def __init__(self, backbone: nn.Module, n_latents: int, d_model: int, positions: bool = True):
        super().__init__()
        self.positions = positions
        width = getattr(backbone, "d_model", d_model)
        if width != d_model:
            raise ValueError(f"the backbone works on d_model={width} but the model on {d_model}; build both "
                             "with the same width")
        self.backbone = backbone
        # LayerNorm: the backbone gets unit-scale inputs (NDT1's core adds unit-scale positional codes)
        self.fold = nn.Sequential(nn.Linear(n_latents * d_model, d_model), nn.LayerNorm(d_model))
        self.unfold = nn.Linear(d_model, n_latents * d_model)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        folded = self.fold(latents.flatten(-2))  # (B, P, D)
        if self.positions:
            code = sinusoidal_positional_encoding(folded.shape[1], folded.shape[2])
            folded = folded + code.to(device=folded.device, dtype=folded.dtype)
        context = self.backbone(folded)  # (B, P, D)
        return latents + self.unfold(context).unflatten(-1, latents.shape[-2:])


class PerceiverDecoder(nn.Module):
    """Output queries (one per unit to predict) read the latents of their step.

    Shapes: queries (B, N_out, D), latents (B, P, L, D) -> unit states (B, P, N_out, D).
    A unit state is what the unit *read* (the block's output minus its query): without the query
    itself, which is the same at every step, it carries only the time-varying population state
    seen through that unit's eyes.
    """

    def __init__(self, d_model: int, n_heads: int = 2, dropout: float = 0.0):
        super().__init__()
        self.read = CrossAttentionBlock(d_model, n_heads, dropout, norm_tokens=False)  # latents as they are, like the encoder's tokens

    def forward(self, queries: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        queries = queries[:, None].expand(-1, latents.shape[1], -1, -1)  # the same unit queries in every step
        return self.read(queries, latents) - queries
