"""Why the NDT1 recipe matters: train variants that change one ingredient each, score them alike.

    table = run_ndt1_ablation(lorenz, profile=get_profile())   # a pandas DataFrame, one row per variant

Every variant trains the same NDT1 on the same Lorenz trials with the same seed, budget and
early stopping (on the validation trials), and is scored on the held-out test trials: rate R^2
against the true rates, latent R^2 after a linear map fitted on the training trials, and bits per
spike with each bin predicted while hidden. Only the changed ingredient differs:

* ``mask_ratio``: the fraction of time bins hidden per trial (the recipe: 0.2);
* ``positional_encoding``: off means an all-zero table, so tokens carry no time stamp;
* ``dropout``: inside the transformer (the recipe: 0.1).

Sizes come from the profile (``ablation_trials``, ``ablation_epochs``): in ``quick`` the runs are
short and small, so only large differences mean something; ``full`` gives the numbers to quote.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import metrics
from .batches import Batch
from .data.lorenz import LorenzDataset, make_lorenz_dataset
from .models.ndt1 import NDT1
from .objectives import MaskedAutoencoding
from .runtime import Profile, get_device, get_profile
from .training import predict_hidden_bins, train


@dataclass(frozen=True)
class Variant:
    """One ablation row: the recipe with one ingredient changed."""

    name: str
    mask_ratio: float = 0.2
    positional_encoding: bool = True
    dropout: float = 0.1


RECIPE = Variant("NDT1 recipe")
VARIANTS = (
    RECIPE,
    Variant("mask 5% of bins", mask_ratio=0.05),
    Variant("mask 50% of bins", mask_ratio=0.5),
    Variant("no positional encoding", positional_encoding=False),
    Variant("no dropout", dropout=0.0),
)


def build_model(variant: Variant, n_neurons: int, n_bins: int, seed: int = 0) -> NDT1:
    """The variant's untrained NDT1; every variant starts from the same weights for one seed."""
    torch.manual_seed(seed)
    model = NDT1(n_neurons, n_bins, dropout=variant.dropout)
    if not variant.positional_encoding:
        model.core.positional_encoding.zero_()  # a buffer, not trained: it stays zero
    return model


def train_variant(variant: Variant, dataset: LorenzDataset, *, epochs: int, patience: int, batch_size: int,
                  seed: int = 0, device=None) -> dict:
    """Train one variant on ``dataset``'s train trials; return its scores on the test trials."""
    spikes = torch.as_tensor(dataset.spikes)
    train_idx, val_idx, test_idx = (dataset.trials(split) for split in ("train", "val", "test"))
    model = build_model(variant, dataset.n_neurons, dataset.n_bins, seed)
    history = train(model, Batch(spikes[train_idx]), Batch(spikes[val_idx]), MaskedAutoencoding(variant.mask_ratio),
                    epochs=epochs, patience=patience, batch_size=batch_size, lr=3e-3, seed=seed,
                    device=device, progress=False)
    rates = predict_hidden_bins(model, spikes[test_idx]).exp()
    latents = predict_hidden_bins(model, spikes, method="latents").numpy()
    latent_r2, _ = metrics.latent_alignment_r2(latents[train_idx], dataset.latents[train_idx],
                                               latents[test_idx], dataset.latents[test_idx])
    return {
        "variant": variant.name, "mask ratio": variant.mask_ratio,
        "positional encoding": "yes" if variant.positional_encoding else "no", "dropout": variant.dropout,
        "rate R2": metrics.r2_score(rates, dataset.rates[test_idx]), "latent R2": latent_r2,
        "bits/spike": metrics.bits_per_spike(rates, spikes[test_idx]),
        "epochs": len(history.train_loss), "seconds": round(history.seconds, 1),
    }


def run_ndt1_ablation(dataset: LorenzDataset | None = None, *, profile: Profile | None = None,
                      variants=VARIANTS, seed: int = 0, device=None, epochs: int | None = None):
    """Train every variant and return a DataFrame (one row each, the recipe first).

    ``dataset`` defaults to a fresh Lorenz dataset of ``profile.ablation_trials`` trials;
    ``epochs`` defaults to ``profile.ablation_epochs`` (with the profile's NDT1 patience).
    The table's ``attrs`` record the sizes, so a printed table says what it was measured with.
    """
    import pandas as pd

    profile = profile or get_profile()
    dataset = dataset if dataset is not None else make_lorenz_dataset(n_trials=profile.ablation_trials, seed=seed)
    epochs = profile.ablation_epochs if epochs is None else epochs
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    device = torch.device(device) if device is not None else get_device()
    rows = [train_variant(variant, dataset, epochs=epochs, patience=profile.ndt1_patience,
                          batch_size=profile.batch_size, seed=seed, device=device) for variant in variants]
    table = pd.DataFrame(rows).set_index("variant")
    table.attrs.update(profile=profile.name, trials=len(dataset.split), max_epochs=epochs, device=device.type)
    return table


def describe_ablation(table) -> str:
    """One line saying what an ablation table was measured with."""
    a = table.attrs
    line = (f"measured here: profile {a.get('profile')}, {a.get('trials')} Lorenz trials, at most "
            f"{a.get('max_epochs')} epochs per variant, on {a.get('device')}")
    if a.get("profile") == "quick":
        line += " (the short version: one brief run per row, so only large gaps mean something)"
    return line
