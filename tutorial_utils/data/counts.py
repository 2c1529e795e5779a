"""Validation of spike-count arrays shaped (trials, time bins, neurons).

Every public entry point that takes user data calls :func:`as_counts` first, so a wrong shape,
NaN, negative, fractional, complex or absurdly large counts fail with a message that says what
was expected.
"""
from __future__ import annotations

import numpy as np
import torch

# No unit fires anywhere near this many spikes in one bin (10 kHz sustained over a 1 s bin); larger
# values are not spike counts (e.g. raw voltages or timestamps), and would overflow exp(log-rate).
MAX_COUNT = 10_000


def as_counts(spikes, name: str = "spikes", n_neurons: int | None = None,
              first_units: int | None = None) -> torch.Tensor:
    """Check ``spikes`` is a (trials, time bins, neurons) array of non-negative integer counts.

    Returns a float32 tensor (the models' input dtype). ``n_neurons``, if given, must match.
    ``first_units``, if given, keeps only the first that many units (at least that many must be
    there); the other columns are ignored and may hold anything (e.g. NaN for held-out units).
    Raises ``ValueError`` naming the problem; the input is never modified.
    A tensor on the ``meta`` device (shapes without values, used to test device handling) gets
    the shape checks only and stays on ``meta``.
    """
    if isinstance(spikes, torch.Tensor) and spikes.is_meta:
        _check_shape(spikes, name, n_neurons, first_units)
        return spikes[..., :first_units].to(torch.float32)
    if isinstance(spikes, torch.Tensor):
        tensor = spikes.detach().cpu()
        array = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()  # numpy has no bfloat16
    else:
        try:
            array = np.asarray(spikes)
        except Exception as error:  # ragged lists and the like
            raise ValueError(f"{name}: expected an array of spike counts shaped (trials, time bins, neurons); "
                             f"could not convert it ({error})") from None
    _check_shape(array, name, n_neurons, first_units)
    array = array[..., :first_units]
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real spike counts (non-negative whole numbers), got complex "
                         f"numbers (dtype {array.dtype}); nothing was dropped: pass the counts themselves")
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
    if values.max() > MAX_COUNT:
        raise ValueError(f"{name}: {int((values > MAX_COUNT).sum())} entries exceed {MAX_COUNT:,} spikes in one bin "
                         f"(max {values.max():g}); that is not a spike count of one unit. Pass counts per "
                         "(trial, time bin, unit), binned at a few to a few hundred ms")
    return torch.as_tensor(values, dtype=torch.float32)


def _check_shape(array, name: str, n_neurons: int | None, first_units: int | None) -> None:
    shape = tuple(array.shape)
    if len(shape) != 3:
        raise ValueError(f"{name}: expected 3 dimensions (trials, time bins, neurons), got shape {shape}. "
                         "A single trial of shape (time, neurons) can be passed as spikes[None].")
    if min(shape) == 0:
        raise ValueError(f"{name}: every dimension must be non-empty, got shape {shape}")
    if n_neurons is not None and shape[2] != n_neurons:
        raise ValueError(f"{name}: expected {n_neurons} neurons (as in the training data), got {shape[2]}")
    if first_units is not None and shape[2] < first_units:
        raise ValueError(f"{name}: expected at least {first_units} units (the model's input units), got {shape[2]}")


def log_mean_rates(counts, floor: float = 1e-3) -> torch.Tensor:
    """(N,) log of each unit's mean count per bin in (trials, T, N) ``counts``, floored at ``floor``
    so silent units stay finite: the log-rates of the mean-rate model, where a Poisson read-out
    should start (an untrained one predicts about one spike per bin)."""
    counts = torch.as_tensor(counts, dtype=torch.float32)
    if counts.dim() != 3:
        raise ValueError(f"counts must be (trials, time bins, units), got shape {tuple(counts.shape)}")
    return counts.mean(dim=(0, 1)).clamp(min=floor).log()
