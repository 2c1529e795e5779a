"""Checks for Notebook 4A's exercises (multi-task masking)."""
from __future__ import annotations

import numpy as np
import torch

from ..masking import intra_region_view
from ..metrics import bits_per_spike
from ..models.ndt1 import TransformerCore, run_with_prompt
from ..mtm_metrics import inter_region_bits_per_spike
from .core import SECOND_DEVICE, ExerciseError, expect as _expect, expect_on_device, on_second_device, run_check


# --- Exercise 1: the intra-region view ---------------------------------------------------------

def _intra_case():
    spikes = torch.arange(1, 1 + 2 * 3 * 6, dtype=torch.float32).reshape(2, 3, 6)  # no zeros
    in_region = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    targets = torch.tensor([[0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 1]], dtype=torch.bool)
    return spikes, in_region, targets


def check_intra_region_view(fn):
    """Exercise 1: ``fn(spikes (B, T, N), in_region (B, N), targets (B, N)) -> (inputs, scored (B, T, N))``."""

    def check(fn):
        spikes, in_region, targets = _intra_case()
        original = spikes.clone()
        result = fn(spikes, in_region, targets)
        _expect(isinstance(result, tuple) and len(result) == 2, "return a tuple (inputs, scored).")
        inputs, scored = result
        _expect(torch.equal(spikes, original), "your function changed `spikes` in place; work on a copy "
                "(masked_fill or multiplication return new tensors).")
        want_inputs, want_scored = intra_region_view(spikes, in_region, targets)
        _expect(tuple(inputs.shape) == tuple(spikes.shape), f"inputs should keep the shape {tuple(spikes.shape)}.")
        _expect(tuple(scored.shape) == (2, 3, 6), f"scored should be (trials, bins, units) = (2, 3, 6), got "
                f"{tuple(scored.shape)}.")
        _expect(scored.dtype == torch.bool, f"scored should be a bool tensor, got {scored.dtype}.")
        shown = (inputs != 0).any(1)  # (B, N)
        if torch.equal(shown, ~targets):
            raise ExerciseError("the targets are hidden but the other areas are still visible: intra-region "
                                "masking predicts the targets from their *own* area only, so zero every unit "
                                "outside `in_region` too (that is inter-region information).")
        if bool((shown & targets).any()):
            raise ExerciseError("some target units are still visible in the inputs: the model would just copy "
                                "them. Zero the targets for every bin.")
        _expect(torch.equal(inputs, want_inputs), "inputs should keep exactly the area's units that are not "
                "targets (in_region & ~targets), unchanged, and zero everything else.")
        if torch.equal(scored, in_region[:, None, :].expand_as(scored)):
            raise ExerciseError("scored marks the whole area; only the targets are predicted (the area's "
                                "visible units are the context, scoring them would reward copying).")
        _expect(torch.equal(scored, want_scored), "scored should be True for the target units at every bin "
                "and False everywhere else.")
        message = "build masks from the inputs (e.g. ~targets & in_region) so they stay on the inputs' device."
        result = on_second_device(fn, (spikes.to(SECOND_DEVICE), in_region.to(SECOND_DEVICE),
                                       targets.to(SECOND_DEVICE)), message)
        if result is not None:
            expect_on_device(result[0], "inputs", message)
            expect_on_device(result[1], "scored", message)

    return run_check("Exercise 1 (intra_region_view)", fn, intra_region_view, check)


# --- Exercise 2: the prompt token --------------------------------------------------------------

def check_run_with_prompt(fn):
    """Exercise 2: ``fn(core, tokens (B, T, D), prompt_tokens (B, 1, D), causal) -> (B, T, D)``."""

    def check(fn):
        torch.manual_seed(0)
        core = TransformerCore(8, 7, n_layers=2, n_heads=2, dropout=0.0).eval()  # room for 6 bins + 1
        tokens, prompt = torch.randn(3, 6, 8), torch.randn(3, 1, 8)
        with torch.no_grad():
            got = fn(core, tokens, prompt, False)
            want = run_with_prompt(core, tokens, prompt)
        _expect(torch.is_tensor(got), f"return a tensor, got {type(got).__name__}.")
        if tuple(got.shape) == (3, 7, 8):
            raise ExerciseError("the output still holds the prompt token (7 positions for 6 bins): drop it "
                                "(x[:, 1:]) after the layers, so the read-out only ever sees the bins.")
        _expect(tuple(got.shape) == (3, 6, 8), f"expected (trials, bins, d_model) = (3, 6, 8), got {tuple(got.shape)}.")
        with torch.no_grad():
            plain = core(tokens)
            shifted = core(torch.cat([prompt, tokens], 1)[:, :6])  # prompt given position 0, bins shifted
            last_dropped = core(torch.cat([prompt, tokens], 1))[:, :6]
        if torch.allclose(got, plain, atol=1e-5):
            raise ExerciseError("the output does not depend on the prompt: put the prompt token in front of "
                                "the bins (torch.cat([prompt_tokens, x], dim=1)) before the transformer layers.")
        if torch.allclose(got, last_dropped, atol=1e-5) or torch.allclose(got, shifted, atol=1e-5):
            raise ExerciseError("the prompt went through the positional encoding and the bins moved one "
                                "position; add core.positional_encoding[:T] to the bins *first*, then prepend "
                                "the prompt, and drop the *first* output position.")
        _expect(torch.allclose(got, want, atol=1e-5), "the bins' outputs differ from the reference: x = tokens + "
                "core.positional_encoding[:T]; x = cat([prompt, x], 1); core.dropout; core.layers (with a causal "
                "mask of T + 1 positions when asked); core.norm; then drop position 0.")
        with torch.no_grad():
            got_causal = fn(core, tokens, prompt, True)
            want_causal = run_with_prompt(core, tokens, prompt, causal=True)
        _expect(torch.allclose(got_causal, want_causal, atol=1e-5), "with causal=True each bin may attend to "
                "the prompt and to earlier bins only: use causal_attention_mask(T + 1) over prompt + bins.")
        message = "create the causal mask on tokens.device."
        model_on_meta = TransformerCore(8, 6, n_layers=1, n_heads=2, dropout=0.0).to(SECOND_DEVICE).eval()
        out = on_second_device(fn, (model_on_meta, tokens.to(SECOND_DEVICE), prompt.to(SECOND_DEVICE), True), message)
        expect_on_device(out, "the output", message)

    return run_check("Exercise 2 (run_with_prompt)", fn, run_with_prompt, check)


# --- Exercise 3: the inter-region metric -------------------------------------------------------

def check_inter_region_bits_per_spike(fn):
    """Exercise 3: ``fn(predict_rates, spikes (B, T, N), areas (N,)) -> float``."""

    def check(fn):
        rng = np.random.default_rng(0)
        areas = np.array([0, 0, 1, 1, 1, 2])
        true_rates = rng.uniform(0.2, 3.0, (4, 8, 6))
        spikes = rng.poisson(true_rates).astype(np.float32)
        calls = []

        def predict_rates(visible):  # a fake model: the truth, blurred by how much it was shown
            visible = np.asarray(visible, bool)
            calls.append(visible.copy())
            return true_rates * (0.6 + 0.1 * visible.sum()) + 0.05 * spikes * visible

        got = fn(predict_rates, spikes, areas)
        _expect(np.isscalar(got) or np.ndim(got) == 0, f"return one number (the mean over neurons), got {type(got).__name__}.")
        _expect(len(calls) == 3, f"expected one prediction per area (3 areas), got {len(calls)} call(s).")
        for c in calls:
            _expect(c.shape == (6,), "pass predict_rates a (N,) bool array of the visible units.")
            hidden = ~c
            if not hidden.any():
                raise ExerciseError("a call showed every unit: hide the area being predicted (visible = areas != r).")
            _expect(len(set(areas[hidden])) == 1 and np.array_equal(hidden, areas == areas[hidden][0]),
                    "each call should hide exactly one whole area and show all the others.")
        calls.clear()
        want = inter_region_bits_per_spike(predict_rates, spikes, areas)
        pooled = bits_per_spike(np.stack([predict_rates(areas != r)[:, :, i] for i, r in enumerate(areas)], -1),
                                spikes)
        if abs(float(got) - pooled) < 1e-6 and abs(pooled - want) > 1e-6:
            raise ExerciseError("this pools all spikes together (NLB's co-bps); MtM averages over neurons: "
                                "bits_per_spike_per_neuron(rates, spikes), then the mean.")
        _expect(abs(float(got) - want) < 1e-6, f"expected {want:.5f} bits/spike, got {float(got):.5f}: predict each "
                "area with it hidden, keep that area's rates, then average the per-neuron bits/spike.")

    return run_check("Exercise 3 (inter_region_bits_per_spike)", fn, inter_region_bits_per_spike, check)
