"""The heads: what the shared representation is trained to do, several things at once.

The model works on patches of ``w = patch_bins`` bins (P = T / w of them); heads that predict
per-bin quantities predict the w bins of each patch.

* :class:`BehaviourHead` — decode behaviour (hand velocity) from the population summary:
  (B, P, D) -> (B, T, d).
* :class:`EncoderHead` — the neural encoder: each unit's log firing rates from its unit state,
  read through its own embedding, smooth in time: (B, P, N, D) -> (B, T, N); scored with the Poisson NLL on hidden bins (objectives.masked_poisson_loss).
* :class:`ContrastiveHead` — CEBRA-style: an embedding of the population per patch, trained with
  InfoNCE so patches with similar behaviour (or neighbouring in time) land close: (B, P, D) -> (B, P, E).
* :class:`ForecastHead` — the next ``k`` bins of every unit from its state at the end of a patch:
  (B, P, N, D) -> (B, P, N, k).

:func:`info_nce` and :func:`behaviour_positives` are the contrastive loss and CEBRA's way of
choosing positive pairs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


HEADS = ("encoder", "behaviour", "contrastive", "forecast")


def per_unit_readout(linear: nn.Linear, units: torch.Tensor, unit_embeddings: torch.Tensor, k: int) -> torch.Tensor:
    """out[b, p, n, j] = e_n . (W_j units[b, p, n] + b_j): k outputs per unit, each read through the unit's embedding.

    Shapes: linear D -> k * D; units (B, P, N, D); unit_embeddings e (B, N, D) -> (B, P, N, k).
    Computed as (W_j^T e_n) . units + b_j . e_n: the read-out vectors are built once per unit, not
    once per unit *and* step (the same numbers, P times less work).
    """
    weight = linear.weight.unflatten(0, (k, -1))  # (k, D_out, D_in)
    readout = torch.einsum("bnd,kdc->bnkc", unit_embeddings, weight)  # (B, N, k, D_in)
    bias = unit_embeddings @ linear.bias.unflatten(0, (k, -1)).T  # (B, N, k)
    return torch.einsum("bpnc,bnkc->bpnk", units, readout) + bias[:, None]


class BehaviourHead(nn.Module):
    """Population summary (B, P, D) -> behaviour (B, T = P * patch_bins, d_behaviour), e.g. hand velocity."""

    def __init__(self, d_model: int, d_behaviour: int = 2, patch_bins: int = 1):
        super().__init__()
        self.d_behaviour, self.patch_bins = d_behaviour, patch_bins
        self.linear = nn.Linear(d_model, patch_bins * d_behaviour)

    def forward(self, population: torch.Tensor) -> torch.Tensor:
        return self.linear(population).unflatten(-1, (self.patch_bins, self.d_behaviour)).flatten(1, 2)


def patches_to_bins(values: torch.Tensor, patch_bins: int) -> torch.Tensor:
    """(B, P, N) one value per patch -> (B, T = P * patch_bins, N), linear between patch centres
    (held flat before the first centre and after the last)."""
    n_trials, n_patches, n_units = values.shape
    by_unit = values.transpose(1, 2).reshape(n_trials * n_units, 1, n_patches)
    bins = F.interpolate(by_unit, scale_factor=patch_bins, mode="linear", align_corners=False)
    return bins.reshape(n_trials, n_units, n_patches * patch_bins).transpose(1, 2)


class EncoderHead(nn.Module):
    """Unit states (B, P, N, D) + unit embeddings (B, N, D) -> log firing rates (B, T = P * patch_bins, N).

    Each unit's embedding is also its read-out vector: log-rate = e_n . (W state_n) + e_n . b, one
    value per patch, so every unit reads the shared state its own way (like a row of NDT1's read-out
    layer), without a per-session output layer. The bins of a patch get that value interpolated
    linearly between patch centres: rates change smoothly in time. (A separate read-out per bin of
    the patch, tried first, fitted bin-to-bin noise of the training trials on the real recordings:
    co-bps -0.03 on the real-data yardstick against +0.02, quick profile; see yardstick.py.)
    """

    def __init__(self, d_model: int, patch_bins: int = 1):
        super().__init__()
        self.patch_bins = patch_bins
        self.linear = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.linear.weight)  # start at the baseline rates (adapters.set_baseline_rates)
        nn.init.zeros_(self.linear.bias)

    def forward(self, units: torch.Tensor, unit_embeddings: torch.Tensor) -> torch.Tensor:
        per_patch = per_unit_readout(self.linear, units, unit_embeddings, 1)[..., 0]  # (B, P, N)
        return patches_to_bins(per_patch, self.patch_bins)


class ContrastiveHead(nn.Module):
    """Population summary (B, P, D) -> unit-length embedding (B, P, d_embed) for InfoNCE."""

    def __init__(self, d_model: int, d_embed: int = 16):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, d_embed))

    def forward(self, population: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(population).float(), dim=-1)


class ForecastHead(nn.Module):
    """Unit states (B, P, N, D) + unit embeddings (B, N, D) -> log-rates of the k bins after each
    patch, (B, P, N, k); read out per unit like :class:`EncoderHead`.

    Read at the last patch the model may see, this is a forecast of the hidden bins that follow.
    """

    def __init__(self, d_model: int, forecast_bins: int):
        super().__init__()
        if forecast_bins < 1:
            raise ValueError(f"forecast_bins must be >= 1, got {forecast_bins}")
        self.forecast_bins = forecast_bins
        self.linear = nn.Linear(d_model, forecast_bins * d_model)
        nn.init.zeros_(self.linear.weight)  # start at the baseline rates (adapters.set_baseline_rates)
        nn.init.zeros_(self.linear.bias)

    def forward(self, units: torch.Tensor, unit_embeddings: torch.Tensor) -> torch.Tensor:
        return per_unit_readout(self.linear, units, unit_embeddings, self.forecast_bins)


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE: each anchor must pick out its own positive among everyone's positives.

    Args:
        anchors, positives: (M, E) unit-length embeddings; row i of each is a positive pair, every
            other row of ``positives`` is a negative for anchor i.
        temperature: similarities are divided by it (small = sharper).
    Returns:
        scalar: mean over anchors of -log softmax_j(anchor_i . positive_j / temperature)[j = i].
    """
    logits = anchors @ positives.T / temperature  # (M, M): row i scores every candidate for anchor i
    labels = torch.arange(len(anchors), device=anchors.device)
    return F.cross_entropy(logits.float(), labels)


def behaviour_positives(behaviour: torch.Tensor) -> torch.Tensor:
    """CEBRA's behaviour-contrastive sampling: each sample's positive is the *other* sample whose
    behaviour is closest. behaviour (M, d) -> (M,) long index of each sample's positive."""
    distances = torch.cdist(behaviour.float(), behaviour.float())  # (M, M)
    eye = torch.eye(len(behaviour), dtype=torch.bool, device=behaviour.device)
    return distances.masked_fill(eye, float("inf")).argmin(dim=1)
