"""Fit NDT1 to your own data in a few lines.

    >>> import tutorial_utils
    >>> fitted = tutorial_utils.fit_ndt1(train_counts)          # (trials, time bins, neurons)
    >>> rates = fitted.predict_rates(test_counts)                # same shape, counts per bin
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data.counts import as_counts
from .models import NDT1
from .objectives import MaskedAutoencoding
from .runtime import Profile, get_profile
from .training import History, predict_hidden_bins, train


@dataclass
class FittedNDT1:
    """A trained NDT1 with the history of its training."""

    model: NDT1
    history: History
    n_neurons: int
    n_bins: int

    def _check(self, spikes) -> torch.Tensor:
        spikes = as_counts(spikes, "spikes", n_neurons=self.n_neurons)
        if spikes.shape[1] > self.n_bins:
            raise ValueError(f"spikes: {spikes.shape[1]} time bins, but the model was fitted on at most "
                             f"{self.n_bins}; split long trials into windows of <= {self.n_bins} bins")
        return spikes

    def predict_rates(self, spikes) -> np.ndarray:
        """Inferred firing rates (counts per bin), shaped like ``spikes`` (trials, time bins, neurons).

        Each bin is inferred from its context while hidden, as in training (see predict_hidden_bins).
        """
        return predict_hidden_bins(self.model, self._check(spikes)).exp().numpy()

    def latents(self, spikes) -> np.ndarray:
        """The model's latent states, (trials, time bins, d_model)."""
        return predict_hidden_bins(self.model, self._check(spikes), method="latents").numpy()


def fit_ndt1(train_spikes, val_spikes=None, *, profile: str | Profile | None = None, seed: int = 0,
             mask_ratio: float = 0.2, progress: bool = True) -> FittedNDT1:
    """Train an NDT1 masked autoencoder on spike counts.

    Args:
        train_spikes: integer counts shaped (trials, time bins, neurons) (numpy or torch).
        val_spikes: optional held-out trials with the same neurons, for early stopping; when
            omitted, the last 10% of the training trials are held out for it.
        profile: "quick" or "full" (see runtime.py) sets the training length.
        seed: makes the run reproducible (exactly, on CPU).
    Raises:
        ValueError: for a wrong shape, NaN/inf, negative or fractional counts, or a neuron-count
            mismatch between train and val.
    """
    train_spikes = as_counts(train_spikes, "train_spikes")
    n_neurons = train_spikes.shape[2]
    if val_spikes is not None:
        val_spikes = as_counts(val_spikes, "val_spikes", n_neurons=n_neurons)
    elif train_spikes.shape[0] >= 10:
        n_val = max(1, train_spikes.shape[0] // 10)
        train_spikes, val_spikes = train_spikes[:-n_val], train_spikes[-n_val:]
    if val_spikes is not None and val_spikes.shape[1] != train_spikes.shape[1]:
        raise ValueError(f"val_spikes has {val_spikes.shape[1]} time bins but train_spikes has "
                         f"{train_spikes.shape[1]}; use trials of the same length")

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    n_bins = train_spikes.shape[1]
    torch.manual_seed(seed)  # the initial weights
    model = NDT1(n_neurons, n_bins)
    history = train(
        model, (train_spikes,), (val_spikes,) if val_spikes is not None else None,
        MaskedAutoencoding(mask_ratio), epochs=profile.ndt1_epochs, batch_size=profile.batch_size,
        patience=profile.ndt1_patience if val_spikes is not None else None, seed=seed,
        progress=progress, desc="fit_ndt1",
    )
    return FittedNDT1(model=model, history=history, n_neurons=n_neurons, n_bins=n_bins)
