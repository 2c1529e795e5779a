"""Checks for Notebook 3's exercises (causal and lagged decoding).

Each check also runs the learner's function on a second device kind (``core.SECOND_DEVICE``): an
answer that builds a tensor on the CPU while its input lives elsewhere would crash on a GPU, and
is caught here, on any machine.
"""
from __future__ import annotations

import torch

from ..decoding import history_design_matrix, shift_by_lag
from ..models.ndt1 import causal_attention_mask
from .core import SECOND_DEVICE, ExerciseError, expect as _expect, expect_on_device, on_second_device, run_check


# --- Exercise 1: pair features with later behaviour -------------------------------------------

def check_shift_by_lag(fn):
    """Exercise 1: ``fn(features (B, T, F), behaviour (B, T, d), lag_bins) -> (features', behaviour')``."""

    def check(fn):
        features = torch.arange(2 * 10 * 3, dtype=torch.float32).reshape(2, 10, 3)
        behaviour = 1000 + torch.arange(2 * 10 * 2, dtype=torch.float32).reshape(2, 10, 2)
        result = fn(features, behaviour, 4)
        _expect(isinstance(result, tuple) and len(result) == 2, "return a tuple (features, behaviour).")
        x, y = (torch.as_tensor(r) for r in result)
        _expect(tuple(x.shape) == (2, 6, 3) and tuple(y.shape) == (2, 6, 2),
                f"with T = 10 and a lag of 4 bins both should keep 10 - 4 = 6 bins: got features "
                f"{tuple(x.shape)} and behaviour {tuple(y.shape)}.")
        want_x, want_y = shift_by_lag(features, behaviour, 4)
        if torch.equal(x, features[:, 4:]) and torch.equal(y, behaviour[:, :6]):
            raise ExerciseError("the shift goes the wrong way: brain activity *leads* the hand, so features "
                                "at bin t pair with behaviour at bin t + lag (drop the first bins of the behaviour).")
        _expect(torch.equal(x, want_x) and torch.equal(y, want_y),
                "features[:, t] should be paired with behaviour[:, t + lag]: keep features[:, :T - lag] "
                "and behaviour[:, lag:].")
        x0, y0 = fn(features, behaviour, 0)
        _expect(torch.equal(torch.as_tensor(x0), features) and torch.equal(torch.as_tensor(y0), behaviour),
                "a lag of 0 should return the inputs unchanged (careful: x[:, :-0] is empty!).")
        message = "the outputs should stay on the inputs' device (slice, don't copy to the CPU or to numpy)."
        result = on_second_device(fn, (features.to(SECOND_DEVICE), behaviour.to(SECOND_DEVICE), 4), message)
        for name, tensor in zip(("features", "behaviour"), result or ()):
            expect_on_device(tensor, f"the shifted {name}", message)

    return run_check("Exercise 1 (shift_by_lag)", fn, shift_by_lag, check)


# --- Exercise 2: the causal attention mask ----------------------------------------------------

def check_causal_attention_mask(fn):
    """Exercise 2: ``fn(n_bins, device) -> (T, T) bool``, True where bin t may NOT attend (future bins)."""

    def check(fn):
        got = fn(4, device="cpu")
        _expect(torch.is_tensor(got), f"return a torch tensor, got {type(got).__name__}.")
        _expect(tuple(got.shape) == (4, 4), f"fn(4) should be a (4, 4) mask, got {tuple(got.shape)}.")
        _expect(got.dtype == torch.bool, f"return a bool mask (True = blocked), got {got.dtype}.")
        want = causal_attention_mask(4)
        if torch.equal(got, ~want):
            raise ExerciseError("the mask is inverted: PyTorch blocks attention where the mask is True, so "
                                "True must mark the *future* bins (above the diagonal).")
        if torch.equal(got, want.T):
            raise ExerciseError("this blocks the past instead of the future: True belongs above the diagonal "
                                "(row t = query bin, column s = key bin; s > t is the future).")
        if torch.equal(got, torch.triu(torch.ones(4, 4, dtype=torch.bool))):
            raise ExerciseError("the diagonal is blocked too, so bin t cannot see itself (and bin 0 sees "
                                "nothing at all); use diagonal=1.")
        _expect(torch.equal(got, want), f"expected {want.int().tolist()}, got {got.int().tolist()}.")
        message = ("create the mask on the `device` you are given (torch.ones(..., device=device)); a mask built "
                   "on the CPU crashes a model that runs on a GPU.")
        expect_on_device(on_second_device(fn, (6, SECOND_DEVICE), message), "the mask", message)

    return run_check("Exercise 2 (causal_attention_mask)", fn, causal_attention_mask, check)


# --- Exercise 3: the Wiener filter's design matrix --------------------------------------------

def check_history_design_matrix(fn):
    """Exercise 3: ``fn(spikes (B, T, N), history_bins k) -> (B, T, k * N)`` of past counts."""

    def check(fn):
        spikes = torch.arange(1, 2 * 6 * 2 + 1, dtype=torch.float32).reshape(2, 6, 2)
        got = torch.as_tensor(fn(spikes, 3))
        _expect(tuple(got.shape) == (2, 6, 6), f"with k = 3 history bins and N = 2 units the design matrix is "
                f"(trials, T, k * N) = (2, 6, 6), got {tuple(got.shape)}.")
        want = history_design_matrix(spikes, 3)
        if torch.equal(got, want):
            pass
        elif torch.equal(got[:, :, :2], spikes) and bool((got[:, 0, 2:] != 0).any()):
            raise ExerciseError("the first bins see counts from the *end* of the trial (torch.roll wraps "
                                "around); bins before the trial start should be zeros.")
        elif torch.equal(got[:, :, :2], want[:, :, 4:]) and torch.equal(got[:, :, 4:], want[:, :, :2]):
            raise ExerciseError("the blocks are in reverse order: columns [0:N] hold bin t itself, "
                                "[N:2N] bin t - 1, and so on.")
        elif torch.equal(got, history_design_matrix(spikes.flip(1), 3).flip(1)):
            raise ExerciseError("this looks into the future (bins t + 1, t + 2); a causal filter may only use "
                                "bins t, t - 1, ..., t - k + 1.")
        else:
            raise ExerciseError("values differ from the reference: block j (columns j*N to (j+1)*N) should hold "
                                "the counts of bin t - j, with zeros before the trial start.")
        _expect(torch.equal(torch.as_tensor(fn(spikes, 1)), spikes), "with k = 1 the design matrix is the counts "
                "themselves.")
        message = ("build the matrix with torch operations on the input's device (e.g. torch.nn.functional.pad "
                   "and torch.cat); zeros created on the CPU break on a GPU.")
        expect_on_device(on_second_device(fn, (spikes.to(SECOND_DEVICE), 3), message), "the design matrix", message)

    return run_check("Exercise 3 (history_design_matrix)", fn, history_design_matrix, check)

