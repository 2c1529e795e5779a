"""Checks for Notebook 2's exercises (stitching sessions)."""
from __future__ import annotations

import copy

import numpy as np
import torch

from .. import metrics
from .core import SECOND_DEVICE, ExerciseError, expect as _expect, expect_on_device, on_second_device, run_check


# --- Notebook 2: stacking sessions ------------------------------------------------------------

def check_stack_sessions(fn):
    """Notebook 2, exercise 1: ``fn(list of (trials_s, T, N_s)) -> (padded spikes, session ids)``."""
    from ..data.sessions import stack_sessions

    def check(fn):
        a, b = torch.ones(2, 5, 3), 2 * torch.ones(3, 5, 4)
        result = fn([a, b])
        _expect(isinstance(result, tuple) and len(result) == 2, "return a tuple (spikes, session).")
        spikes, session = (torch.as_tensor(r) for r in result)
        _expect(tuple(spikes.shape) == (5, 5, 4), "spikes should be (2 + 3 trials, 5 bins, 4 = widest session), "
                f"got {tuple(spikes.shape)}.")
        _expect(session.tolist() == [0, 0, 1, 1, 1], f"session ids should be [0, 0, 1, 1, 1], got {session.tolist()}.")
        _expect(bool((spikes[:2, :, 3] == 0).all()), "pad the narrower session with zeros on the *unit* axis (last).")
        _expect(torch.equal(spikes.float(), stack_sessions([a, b])[0]), "values differ from the reference: "
                "concatenate the sessions' trials in order, each padded to the widest unit count.")
        advice = "Create new tensors on the sessions' device (device=sessions[0].device), or pad with torch.nn.functional.pad."
        result = on_second_device(fn, ([a.to(SECOND_DEVICE), b.to(SECOND_DEVICE)],), advice)
        if result is not None:
            expect_on_device(result[0], "the stacked spikes", advice)

    return run_check("Exercise 1 (stack_sessions)", fn, stack_sessions, check)


def check_principal_components(fn):
    """Notebook 2, exercise 2: ``fn(x (items, features), n_components) -> (items, n_components)``."""

    def check(fn):
        rng = np.random.default_rng(5)
        x = rng.normal(size=(40, 6)) * [5, 3, 1, 0.5, 0.2, 0.1] + 7.0
        got = np.asarray(fn(x, 2))
        _expect(got.shape == (40, 2), f"expected (items, n_components) = (40, 2), got {got.shape}.")
        want = metrics.principal_components(x, 2)
        if np.allclose(np.abs(got), np.abs(want), atol=1e-6):
            return  # PCs are defined up to sign
        uncentered = np.linalg.svd(x, full_matrices=False)[2][:2]
        if np.allclose(np.abs(got), np.abs(x @ uncentered.T), atol=1e-6):
            raise ExerciseError("subtract the mean of each feature before the SVD (PCA works on centered data).")
        raise ExerciseError("projections differ from the reference: center the rows, take the SVD "
                            "x = U S V^T, and project on the first rows of V^T.")

    return run_check("Exercise 2 (principal_components)", fn, metrics.principal_components, check)


def check_swap_session_parts(fn):
    """Notebook 2, exercise 3: ``fn(model, source, target)`` copies source's read-in and embedding."""
    from ..models.stitch import NDT1Stitch, swap_session_parts

    def check(fn):
        torch.manual_seed(0)
        model = NDT1Stitch([3, 5], 4, d_model=8, n_heads=2)
        reference = copy.deepcopy(model)
        fn(model, 1, 0)
        swap_session_parts(reference, 1, 0)
        _expect(torch.equal(model.session_embedding.weight, reference.session_embedding.weight),
                "session 0's embedding should now equal session 1's (and session 1's must not change).")
        _expect(torch.equal(model.read_in[0].weight, reference.read_in[0].weight),
                "session 0's read-in weight should be session 1's first 3 columns (units laid on in order).")
        _expect(torch.equal(model.read_in[0].bias, reference.read_in[0].bias), "copy the read-in bias too.")
        _expect(torch.equal(model.read_in[1].weight, reference.read_in[1].weight), "leave the source session as it was.")
        on_gpu = copy.deepcopy(model).to(SECOND_DEVICE)
        advice = ("Change the parameters in place (.zero_(), .copy_(), slice assignment under torch.no_grad()) "
                  "instead of assigning new CPU tensors to them.")
        on_second_device(fn, (on_gpu, 1, 0), advice)
        for name, parameter in on_gpu.named_parameters():
            expect_on_device(parameter, f"after your function, the parameter {name}", advice)

    return run_check("Exercise 3 (swap_session_parts)", fn, swap_session_parts, check)
