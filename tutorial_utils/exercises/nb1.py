"""Checks for Notebook 1's exercises (NDT1 on Lorenz)."""
from __future__ import annotations

import numpy as np
import torch

from .. import metrics
from ..masking import mask_time_bins
from ..models.ndt1 import sinusoidal_positional_encoding
from ..objectives import masked_poisson_loss
from .core import SECOND_DEVICE, ExerciseError, expect as _expect, expect_on_device, on_second_device, run_check

_DEVICE_ADVICE = ("Create new tensors where the inputs live, e.g. torch.zeros(..., device=spikes.device), and "
                  "move random numbers drawn with the (CPU) generator: torch.rand(..., generator=generator)"
                  ".to(spikes.device).")


# --- Exercise: masking time bins --------------------------------------------------------------

def check_mask_time_bins(fn):
    """Exercise 1: ``fn(spikes, mask_ratio, generator) -> (masked_spikes, mask)``."""

    def check(fn):
        spikes = torch.poisson(torch.full((16, 50, 7), 2.0, dtype=torch.float32),
                               generator=torch.Generator().manual_seed(1)) + 1.0  # no zeros
        original = spikes.clone()
        result = fn(spikes, 0.2, torch.Generator().manual_seed(0))
        _expect(isinstance(result, tuple) and len(result) == 2,
                "return a tuple (masked_spikes, mask).")
        masked, mask = result
        _expect(torch.equal(spikes, original), "your function changed its input in place; "
                "work on a copy (e.g. spikes.clone() or masked_fill, which returns a new tensor).")
        _expect(tuple(masked.shape) == tuple(spikes.shape),
                f"masked_spikes should have the input's shape {tuple(spikes.shape)}, got {tuple(masked.shape)}.")
        _expect(tuple(mask.shape) == (16, 50),
                f"mask should be (trials, time bins) = (16, 50): one flag per token, got {tuple(mask.shape)}.")
        _expect(mask.dtype == torch.bool, f"mask should be a bool tensor, got {mask.dtype}.")
        per_trial = mask.sum(dim=1)
        _expect(bool((per_trial == 10).all()),
                f"with mask_ratio=0.2 and 50 bins, every trial should have exactly 10 masked bins; "
                f"got between {int(per_trial.min())} and {int(per_trial.max())}.")
        _expect(bool((masked[mask] == 0).all()), "masked bins should be zero for every neuron.")
        _expect(torch.equal(masked[~mask], spikes[~mask]), "bins that are not masked must keep their counts.")
        _expect(len({tuple(row.tolist()) for row in mask}) > 1,
                "every trial got the same masked bins; draw a fresh random choice per trial.")
        again = fn(spikes, 0.2, torch.Generator().manual_seed(0))[1]
        _expect(torch.equal(mask, again), "the same generator seed gave different masks; "
                "draw the random numbers with the `generator` argument.")
        # During training, spikes live on the GPU while the generator stays on the CPU.
        result = on_second_device(fn, (spikes.to(SECOND_DEVICE), 0.2, torch.Generator().manual_seed(0)),
                                  "Your mask (or its random numbers) is created on the CPU but spikes live on "
                                  "the GPU ('meta' in this check, 'cuda' on Colab): pass device=spikes.device "
                                  "when you create it, and move the generator's random numbers with "
                                  ".to(spikes.device).")
        if result is not None:
            expect_on_device(result[0], "masked_spikes", _DEVICE_ADVICE)
            expect_on_device(result[1], "the mask", "Pass device=spikes.device when you create it.")

    return run_check("Exercise 1 (mask_time_bins)", fn, mask_time_bins, check)


# --- Exercise: masked Poisson loss ------------------------------------------------------------

def check_masked_poisson_loss(fn):
    """Exercise 2: ``fn(log_rates, spikes, mask) -> scalar`` mean Poisson NLL over masked bins."""

    def check(fn):
        g = torch.Generator().manual_seed(3)
        log_rates = torch.randn(4, 20, 5, generator=g)
        spikes = torch.poisson(torch.exp(torch.randn(4, 20, 5, generator=g)), generator=g)
        mask = torch.rand(4, 20, generator=g) < 0.3
        got = fn(log_rates, spikes, mask)
        _expect(torch.is_tensor(got) and got.dim() == 0,
                f"return a scalar tensor (so it can be back-propagated), got {type(got).__name__} "
                f"{tuple(got.shape) if torch.is_tensor(got) else ''}.")
        want = masked_poisson_loss(log_rates, spikes, mask)
        if torch.isclose(got, want, rtol=1e-4, atol=1e-5):
            loss = on_second_device(fn, tuple(t.to(SECOND_DEVICE) for t in (log_rates, spikes, mask)),
                                    _DEVICE_ADVICE.replace("spikes.device", "log_rates.device"))
            expect_on_device(loss, "the loss", "Build it only from the input tensors.")
            return
        everywhere = masked_poisson_loss(log_rates, spikes, torch.ones_like(mask))
        nll = torch.exp(log_rates) - spikes * log_rates
        with_factorial = want + (torch.lgamma(spikes + 1) * mask.unsqueeze(-1)).sum() / (mask.sum() * 5)
        rates_as_log = masked_poisson_loss(torch.log(log_rates.clamp(min=1e-6)), spikes, mask)
        hints = [
            (everywhere, "it averages over every bin; only the masked bins (mask == True) should count."),
            (-want, "it has the opposite sign: minimise the *negative* log-likelihood exp(log_rate) - k * log_rate."),
            ((nll * mask.unsqueeze(-1)).sum(), "it is a sum; divide by the number of masked (bin, neuron) entries."),
            ((nll * mask.unsqueeze(-1)).sum() / mask.sum(), "divide by the number of masked (bin, neuron) "
             "entries, not the number of masked bins."),
            (with_factorial, "it includes log(k!), a constant; it does not change the gradients, but drop it "
             "so the numbers match the reference."),
            (rates_as_log, "the first argument is the *log* rate: use exp(log_rates) for the rate."),
        ]
        for value, hint in hints:
            if torch.isfinite(value) and torch.isclose(got, value, rtol=1e-4, atol=1e-5):
                raise ExerciseError(f"got {float(got):.4f}, expected {float(want):.4f}: {hint}")
        raise ExerciseError(f"got {float(got):.4f}, expected {float(want):.4f}. The Poisson NLL per entry is "
                            "exp(log_rate) - k * log_rate, averaged over masked (bin, neuron) entries.")

    return run_check("Exercise 2 (masked_poisson_loss)", fn, masked_poisson_loss, check)


# --- Exercise: positional encoding ------------------------------------------------------------

def check_positional_encoding(fn):
    """Exercise 3: ``fn(n_bins, d_model) -> (n_bins, d_model)`` sinusoidal encoding."""

    def check(fn):
        for n_bins, d_model in [(50, 16), (7, 29)]:
            got = torch.as_tensor(fn(n_bins, d_model), dtype=torch.float32)
            _expect(tuple(got.shape) == (n_bins, d_model),
                    f"fn({n_bins}, {d_model}) should have shape ({n_bins}, {d_model}), got {tuple(got.shape)}.")
            want = sinusoidal_positional_encoding(n_bins, d_model)
            if torch.allclose(got, want, atol=1e-4):
                continue
            if d_model % 2 == 0 and torch.allclose(got[:, 0::2], want[:, 1::2], atol=1e-4):
                raise ExerciseError("sin and cos are swapped: even columns take sin, odd columns cos.")
            if torch.allclose(got[0], want[0], atol=1e-4):
                raise ExerciseError("position 0 is right but later ones are not: check the frequencies, "
                                    "10000 ** (-2i / d_model) for the column pair 2i, 2i+1.")
            raise ExerciseError(f"values differ from the reference for n_bins={n_bins}, d_model={d_model} "
                                "(row 0 should be [0, 1, 0, 1, ...]).")

    return run_check("Exercise 3 (positional encoding)", fn, sinusoidal_positional_encoding, check)


# --- Exercise: linear alignment of latents ----------------------------------------------------

def check_fit_linear_map(fn):
    """Exercise 4: ``fn(source (..., D), target (..., K)) -> weights (D + 1, K)``, last row = intercept."""

    def check(fn):
        rng = np.random.default_rng(4)
        source = rng.normal(size=(30, 20, 6))
        true_weights = rng.normal(size=(7, 3))
        target = source @ true_weights[:-1] + true_weights[-1] + 0.01 * rng.normal(size=(30, 20, 3))
        got = np.asarray(fn(source, target))
        if got.shape == (6, 3):
            raise ExerciseError("weights are (D, K): add a column of ones to the source so the map has an "
                                "intercept, and return (D + 1, K) with the intercept as the last row.")
        _expect(got.shape == (7, 3), f"expected weights shaped (D + 1, K) = (7, 3), got {got.shape}.")
        want = metrics.fit_linear_map(source, target)
        if np.allclose(got[[-1] + list(range(6))], want, atol=1e-3):
            raise ExerciseError("the intercept is the first row; put it last (the reference "
                                "`apply_linear_map` reads it from weights[-1]).")
        _expect(np.allclose(got, want, atol=1e-3), "the weights are not the least-squares solution; "
                "flatten trials and time to rows, append a ones column, and solve (X^T X) W = X^T Y.")

    return run_check("Exercise 4 (fit_linear_map)", fn, metrics.fit_linear_map, check)
