"""Per-unit tokens: every recorded unit in every short window ("patch") of time is one token.

NDT1 packs all units of a bin into one token, so the token's meaning depends on *which* units a
session recorded (hence Notebook 2's per-session read-ins). Here a token is one unit's values in
one patch of ``patch_bins`` bins, tagged with who the unit is (a learned **unit embedding**) and
how it was recorded (a learned **modality embedding**: spikes or calcium fluorescence):

    token[b, p, n] = unit_embedding[n] * (value_encoder(x[b, bins of patch p, n]) - value_encoder(0)) + modality_embedding

The product matters: the unit embedding says who the unit is *and* how its activity is read, so
even a plain average of a bin's tokens is a learned linear read-in of the whole population (as
NDT1's read-in layer), not just the population's mean rate.

(``patch_bins=1`` gives one token per unit per bin; a few bins per token cut the token count, and
the compute, by that factor.) A session with other units just brings other unit embeddings; a
trial with fewer units is padded, and the padding is hidden from attention by a key-padding mask
(True = not a real token).
"""
from __future__ import annotations

import torch
from torch import nn

MODALITIES = ("spikes", "calcium")


def to_patches(values: torch.Tensor, patch_bins: int) -> torch.Tensor:
    """(B, T, N) -> (B, T / patch_bins, N, patch_bins): each unit's values cut into patches of time."""
    n_trials, n_bins, n_units = values.shape
    if n_bins % patch_bins:
        raise ValueError(f"trials of {n_bins} bins cannot be cut into patches of {patch_bins} bins; choose a "
                         f"patch_bins that divides {n_bins} (or crop the trials)")
    return values.reshape(n_trials, n_bins // patch_bins, patch_bins, n_units).transpose(2, 3)


class ModalityTokenizer(nn.Module):
    """Values (B, T, N) + unit embeddings (B, N, D) -> tokens (B, P, N, D), P = T / patch_bins.

    Subclasses say which features of one unit's patch the MLP reads (:meth:`features`); this class
    encodes them and adds the unit and modality embeddings.
    """

    n_features_per_bin = 1

    def __init__(self, d_model: int, patch_bins: int = 1):
        super().__init__()
        self.d_model, self.patch_bins = d_model, patch_bins
        width = self.n_features_per_bin * patch_bins
        self.value_encoder = nn.Sequential(nn.Linear(width, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.modality_embedding = nn.Parameter(torch.randn(d_model) * 0.02)

    def features(self, values: torch.Tensor) -> torch.Tensor:  # (B, T, N) -> (B, P, N, features)
        raise NotImplementedError

    def forward(self, values: torch.Tensor, unit_embeddings: torch.Tensor) -> torch.Tensor:
        if values.dim() != 3:
            raise ValueError(f"{type(self).__name__} expects values shaped (trials, time bins, units), "
                             f"got {tuple(values.shape)}")
        if unit_embeddings.shape[0] != values.shape[0] or unit_embeddings.shape[1] != values.shape[2]:
            raise ValueError(f"unit embeddings {tuple(unit_embeddings.shape)} must be (trials, units, d_model) "
                             f"for values {tuple(values.shape)}")
        unit = unit_embeddings[:, None]  # (B, 1, N, D): the same unit in every patch
        features = self.features(values)
        # centred: a silent patch (all features 0) encodes to exactly 0, so the tokens of the many
        # silent units carry no signal that would drown the few active ones in the latents' average
        encoded = self.value_encoder(features) - self.value_encoder(features.new_zeros(features.shape[-1]))
        return unit * encoded + self.modality_embedding


class SpikeTokenizer(ModalityTokenizer):
    """Spike counts: the MLP reads log(1 + count) of the patch's bins. (B, T, N) -> (B, P, N, D)."""

    def features(self, values: torch.Tensor) -> torch.Tensor:
        return to_patches(torch.log1p(values.clamp(min=0)), self.patch_bins)


class CalciumTokenizer(ModalityTokenizer):
    """Calcium fluorescence (dF/F): the MLP reads the patch's values *and their changes*.

    A spike shows up in fluorescence as a sudden rise that decays over hundreds of ms, so the level
    at a bin mixes recent and older spikes; the change from the previous bin is what marks a new
    one. Giving both lets the tokenizer undo the indicator's smearing. (B, T, N) -> (B, P, N, D).
    """

    n_features_per_bin = 2

    def features(self, values: torch.Tensor) -> torch.Tensor:
        change = torch.diff(values, dim=1, prepend=values[:, :1])  # 0 at the first bin
        return torch.cat([to_patches(values, self.patch_bins), to_patches(change, self.patch_bins)], dim=-1)
