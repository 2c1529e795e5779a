"""Checks for Notebook 4B's exercises (a NeuroFMX-style model).

Two sections, one per author, so they merge without conflicts: the selective scan (helper `ssm`)
and the Perceiver / contrastive exercises below (helper `neurofmx`). Each check also runs the
learner's function on ``meta`` tensors (core.SECOND_DEVICE), so code that would crash on a GPU is
caught on any machine.
"""
from __future__ import annotations

import math

import torch

from .core import SECOND_DEVICE, ExerciseError, expect as _expect, expect_on_device, on_second_device, run_check

# ================================================================================================
# === NeuroFMX section (helper `neurofmx`): Perceiver cross-attention, InfoNCE ======================
# ================================================================================================

from ..models.neurofmx.attention import cross_attention
from ..models.neurofmx.heads import info_nce


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
