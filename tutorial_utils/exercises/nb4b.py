"""Checks for Notebook 4B's exercises (a NeuroFMX-style model, piece by piece).

Each check also runs the learner's function on a second device kind (``core.SECOND_DEVICE``): an
answer that builds a tensor on the CPU while its inputs live elsewhere would crash on a GPU, and
is caught here, on any machine.
"""
from __future__ import annotations

import torch

from ..models.selective_scan import selective_scan_sequential
from .core import SECOND_DEVICE, ExerciseError, expect as _expect, expect_on_device, on_second_device, run_check


# ==================================================================================================
# Selective scan (owner: ssm) ----------------------------------------------------------------------
# ==================================================================================================

def _scan_inputs(b=2, d=3, n=4, l=9, seed=0):
    """Small seeded inputs in Mamba's regime: positive steps, negative A."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, l, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(b, d, l, generator=g) - 0.5)
    A = -torch.exp(torch.randn(d, n, generator=g) * 0.5)
    B, C = torch.randn(b, n, l, generator=g), torch.randn(b, n, l, generator=g)
    return u, delta, A, B, C


def _mistaken_scan(u, delta, A, B, C, decay="exp(delta*A)", drive="delta*B*u", read_before_update=False,
                   contract="C"):
    """The recurrence with one typical mistake, to recognise it in a learner's output: (b, d, l)."""
    b, d, l = u.shape
    h = torch.zeros(b, d, A.shape[1])
    ys = []
    for t in range(l):
        step = delta[:, :, t, None]
        a = {"exp(delta*A)": torch.exp(step * A), "A": A.expand(b, -1, -1), "exp(A)": torch.exp(A).expand(b, -1, -1),
             "delta*A": step * A, "1+delta*A": 1 + step * A}[decay]
        x = {"delta*B*u": step * B[:, None, :, t] * u[:, :, t, None],
             "B*u": B[:, None, :, t] * u[:, :, t, None]}[drive]
        new_h = a * h + x
        state = h if read_before_update else new_h
        h = new_h
        ys.append({"C": (state * C[:, None, :, t]).sum(-1), "sum": state.sum(-1),
                   "B": (state * B[:, None, :, t]).sum(-1)}[contract])
    return torch.stack(ys, dim=-1)


_SCAN_MISTAKES = [
    (dict(decay="A"), "the state is multiplied by A itself. A is the continuous-time matrix: discretise it "
     "with the step size, decay = exp(delta_t * A), so that a small step keeps the state and a large one forgets."),
    (dict(decay="exp(A)"), "the decay is exp(A), without the step size: use exp(delta_t * A) (delta is what "
     "makes the scan *selective*: each bin chooses how much to remember)."),
    (dict(decay="delta*A"), "the decay is delta_t * A, not exp(delta_t * A): it is negative, so the state flips "
     "sign every step. Exponentiate it."),
    (dict(decay="1+delta*A"), "the decay is 1 + delta_t * A (Euler's first-order step). Mamba's discretisation is "
     "exp(delta_t * A), which stays in (0, 1) however large the step."),
    (dict(drive="B*u"), "the input enters as B_t * u_t: scale it by the step size too, delta_t * B_t * u_t "
     "(a longer step takes in more of the input)."),
    (dict(decay="A", drive="B*u"), "the recurrence is not discretised: h_t = A h_{t-1} + B_t u_t is the continuous "
     "system used as if it were discrete. Use exp(delta_t * A) for the decay and delta_t * B_t * u_t for the input."),
    (dict(read_before_update=True), "y_t is read from the state *before* step t's update (h_{t-1}): update the "
     "state first, then read it out, so y_t includes u_t."),
    (dict(contract="sum"), "y_t sums the state without C_t: the output is y_t = sum_n C_t[n] h_t[n]."),
    (dict(contract="B"), "y_t contracts the state with B_t; the read-out uses C_t (B writes in, C reads out)."),
]


def check_selective_scan(fn):
    """Exercise: ``fn(u (b, d, l), delta (b, d, l), A (d, n), B (b, n, l), C (b, n, l)) -> y (b, d, l)``,
    the sequential selective scan (no D, z, bias or softplus; delta is already positive)."""

    def check(fn):
        u, delta, A, B, C = _scan_inputs()
        got = fn(u, delta, A, B, C)
        _expect(torch.is_tensor(got), f"return a torch tensor y of shape (b, d, l), got {type(got).__name__}.")
        want = selective_scan_sequential(u, delta, A, B, C)
        if tuple(got.shape) == (2, 9, 3):
            raise ExerciseError("y has shape (b, l, d) = (2, 9, 3); return it as (b, d, l) = (2, 3, 9), the layout "
                                "of u (torch.stack(ys, dim=-1)).")
        if tuple(got.shape) == (2, 3, 9, 4):
            raise ExerciseError("y still has the state axis, (b, d, l, n): contract it with C_t, "
                                "y_t = sum_n C_t[n] h_t[n].")
        _expect(tuple(got.shape) == tuple(want.shape), f"y should have u's shape (b, d, l) = {tuple(want.shape)}, "
                f"got {tuple(got.shape)}.")
        got = got.detach().float()
        if torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            pass
        else:
            for mistake, message in _SCAN_MISTAKES:
                if torch.allclose(got, _mistaken_scan(u, delta, A, B, C, **mistake), rtol=1e-4, atol=1e-5):
                    raise ExerciseError(message)
            first_bad = int((~torch.isclose(got, want, rtol=1e-4, atol=1e-5)).any(dim=(0, 1)).float().argmax())
            if first_bad == 0:
                raise ExerciseError("y differs from the reference already at t = 0, where h_0 = delta_0 * B_0 * u_0 "
                                    "and y_0 = sum_n C_0[n] h_0[n] (the state starts at zero).")
            raise ExerciseError(f"y matches the reference up to t = {first_bad - 1} and then differs: check how the "
                                "state is carried from one step to the next, h_t = exp(delta_t A) h_{t-1} + "
                                "delta_t B_t u_t.")
        # a long, slowly forgetting sequence: what the state is for
        u1, delta1, A1, B1, C1 = _scan_inputs(b=1, d=2, n=3, l=60, seed=1)
        delta1 = delta1 * 0.05
        _expect(torch.allclose(torch.as_tensor(fn(u1, delta1, A1, B1, C1)).float(),
                               selective_scan_sequential(u1, delta1, A1, B1, C1), rtol=1e-4, atol=1e-5),
                "right on a short sequence but not on a long one with small steps: is the state carried over every "
                "time step (and not reset)?")
        message = ("create the state on the inputs' device, e.g. u.new_zeros(b, d, n) or "
                   "torch.zeros(b, d, n, device=u.device).")
        args = tuple(x.to(SECOND_DEVICE) for x in (u, delta, A, B, C))
        expect_on_device(on_second_device(fn, args, message), "y", message)

    return run_check("Exercise (selective_scan)", fn, selective_scan_sequential, check)


# ==================================================================================================
# (later sections: Perceiver cross-attention, InfoNCE, ... — owner: neurofmx)
# ==================================================================================================
