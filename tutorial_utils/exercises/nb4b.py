"""Checks for Notebook 4B's exercises (a NeuroFMX-style model, piece by piece).

Each check also runs the learner's function on a second device kind (``core.SECOND_DEVICE``): an
answer that builds a tensor on the CPU while its inputs live elsewhere would crash on a GPU, and
is caught here, on any machine.
"""
from __future__ import annotations

import math

import torch

from ..models.neurofmx.attention import cross_attention
from ..models.neurofmx.heads import info_nce
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
# Perceiver cross-attention, InfoNCE (owner: neurofmx) ---------------------------------------------
# ==================================================================================================

def check_cross_attention(fn):
    """Exercise: ``fn(queries (..., Q, d), keys (..., K, d), values (..., K, d_v), key_padding_mask (..., K))
    -> (..., Q, d_v)``, padded keys (mask True) getting zero weight."""

    def check(fn):
        g = torch.Generator().manual_seed(0)
        q, k, v = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 6, generator=g)
        mask = torch.tensor([[False] * 5, [False, False, False, True, True]])
        got = fn(q, k, v, mask)
        _expect(torch.is_tensor(got), f"return a tensor, got {type(got).__name__}.")
        _expect(tuple(got.shape) == (2, 3, 6), f"3 queries reading values of width 6 give (2, 3, 6), got "
                f"{tuple(got.shape)}: the output has one row per *query*, with the values' width.")
        want = cross_attention(q, k, v, mask)
        if torch.allclose(got, want, atol=1e-5):
            pass
        elif torch.allclose(got, cross_attention(q, k, v, None), atol=1e-5):
            raise ExerciseError("the padding mask is ignored: set the scores of padded keys to -inf before the "
                                "softmax (scores.masked_fill(mask[..., None, :], float('-inf'))).")
        elif torch.allclose(got, cross_attention(q, k, v, ~mask & mask.any(-1, keepdim=True)), atol=1e-5) \
                or not torch.isfinite(got).all():
            raise ExerciseError("the mask is inverted (or blocks every key): True marks *padding*, the keys to ignore.")
        elif torch.allclose(got, cross_attention(q * math.sqrt(4), k, v, mask), atol=1e-5):
            raise ExerciseError("scale the scores by 1 / sqrt(d), d the queries' width (here 4).")
        elif torch.allclose(got, ((q @ k.transpose(-2, -1) / 2).masked_fill(mask[:, None], float("-inf"))
                                  .softmax(dim=-2).nan_to_num() @ v), atol=1e-5):
            raise ExerciseError("the softmax runs over the wrong axis: each query's weights over the *keys* "
                                "(the last axis of the scores) must sum to 1.")
        else:
            raise ExerciseError("values differ from the reference: softmax(q k^T / sqrt(d)) over the keys, padded keys "
                                "set to -inf first, then weights @ values.")
        message = ("build the mask and the scores from the inputs (no new tensors on the CPU), so the "
                   "function runs wherever its inputs live.")
        moved = (q.to(SECOND_DEVICE), k.to(SECOND_DEVICE), v.to(SECOND_DEVICE), mask.to(SECOND_DEVICE))
        expect_on_device(on_second_device(fn, moved, message), "the attention output", message)

    return run_check("Exercise (cross_attention)", fn, cross_attention, check)


def check_info_nce(fn):
    """Exercise: ``fn(anchors (M, E), positives (M, E), temperature) -> scalar`` InfoNCE."""

    def check(fn):
        g = torch.Generator().manual_seed(1)
        anchors = torch.nn.functional.normalize(torch.randn(6, 3, generator=g), dim=-1)
        positives = torch.nn.functional.normalize(anchors + 0.3 * torch.randn(6, 3, generator=g), dim=-1)
        got = fn(anchors, positives, 0.2)
        _expect(torch.is_tensor(got) and got.dim() == 0, "return a scalar tensor (the mean over anchors).")
        want = info_nce(anchors, positives, 0.2)
        if torch.allclose(got, want, atol=1e-5):
            pass
        elif torch.allclose(got, info_nce(anchors, positives, 1.0), atol=1e-5):
            raise ExerciseError("divide the similarities by the temperature before the softmax.")
        elif torch.allclose(got, info_nce(anchors, positives, 0.2) * 6, atol=1e-4):
            raise ExerciseError("average over the anchors (mean), don't sum.")
        elif torch.allclose(got, info_nce(positives, anchors, 0.2), atol=1e-5):
            raise ExerciseError("rows and columns are swapped: row i of the logits must score anchor i against every "
                                "positive (anchors @ positives.T).")
        elif torch.allclose(got, -info_nce(anchors, positives, 0.2), atol=1e-5):
            raise ExerciseError("the sign is flipped: InfoNCE is the cross-entropy, -log softmax of the right pair.")
        else:
            raise ExerciseError(f"expected {want.item():.4f}, got {float(got):.4f}: logits = anchors @ positives.T / "
                                "temperature, then the cross-entropy with label i for row i.")
        message = ("make the labels on the inputs' device (torch.arange(M, device=anchors.device)); labels made on "
                   "the CPU crash on a GPU.")
        on_second_device(fn, (anchors.to(SECOND_DEVICE), positives.to(SECOND_DEVICE), 0.2), message)

    return run_check("Exercise (info_nce)", fn, info_nce, check)
