"""Validation of spike-count arrays shaped (trials, time bins, neurons).

Every public entry point that takes user data calls :func:`as_counts` first, so a wrong shape,
NaN, negative or fractional counts fail with a message that says what was expected.
"""
from __future__ import annotations

import numpy as np
import torch


def as_counts(spikes, name: str = "spikes", n_neurons: int | None = None) -> torch.Tensor:
    """Check ``spikes`` is a (trials, time bins, neurons) array of non-negative integer counts.

    Returns a float32 tensor (the models' input dtype). ``n_neurons``, if given, must match.
    Raises ``ValueError`` naming the problem; the input is never modified.
    """
    if isinstance(spikes, torch.Tensor):
        array = spikes.detach().cpu().numpy()
    else:
        try:
            array = np.asarray(spikes)
        except Exception as error:  # ragged lists and the like
            raise ValueError(f"{name}: expected an array of spike counts shaped (trials, time bins, neurons); "
                             f"could not convert it ({error})") from None
    if array.ndim != 3:
        raise ValueError(f"{name}: expected 3 dimensions (trials, time bins, neurons), got shape {array.shape}. "
                         "A single trial of shape (time, neurons) can be passed as spikes[None].")
    if min(array.shape) == 0:
        raise ValueError(f"{name}: every dimension must be non-empty, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name}: expected numeric spike counts, got dtype {array.dtype}")
    values = array.astype(np.float64, copy=False)
    if np.isnan(values).any() or np.isinf(values).any():
        bad = int((~np.isfinite(values)).sum())
        raise ValueError(f"{name}: {bad} entries are NaN or infinite; spike counts must be finite "
                         "(drop or impute those bins first)")
    if (values < 0).any():
        raise ValueError(f"{name}: {int((values < 0).sum())} entries are negative (min {values.min():g}); "
                         "spike counts must be >= 0")
    if not np.array_equal(values, np.round(values)):
        raise ValueError(f"{name}: spike counts must be whole numbers (got e.g. {values[values != np.round(values)][0]:g}); "
                         "pass binned counts, not rates or smoothed activity")
    if n_neurons is not None and array.shape[2] != n_neurons:
        raise ValueError(f"{name}: expected {n_neurons} neurons (as in the training data), got {array.shape[2]}")
    return torch.as_tensor(values, dtype=torch.float32)
