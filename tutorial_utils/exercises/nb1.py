"""Checks for Notebook 1's exercises (NDT1 on Lorenz)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..masking import mask_time_bins
from ..models import ndt1_by_hand
from ..models.ndt1 import NDT1, sinusoidal_positional_encoding
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


# --- Exercise 4: the NDT1 forward pass, by hand -------------------------------------------------
# The learner writes attention, the encoder layer and the whole forward pass as functions that
# read the weights of a package NDT1; each check compares them with the package's own modules on
# the same weights, then names the typical mistake when one of them explains the wrong numbers.

def _same(got, want, atol: float = 1e-5) -> bool:
    return (torch.is_tensor(got) and got.shape == want.shape
            and torch.allclose(got.float(), want.float(), rtol=1e-4, atol=atol))


def _name_the_mistake(got, want, mistakes, advice: str) -> None:
    """Raise an ExerciseError naming the first mistake that reproduces ``got``, else ``advice``."""
    _expect(torch.is_tensor(got), f"return a tensor, got {type(got).__name__}.")
    _expect(got.shape == want.shape, f"the output should have shape {tuple(want.shape)}, got {tuple(got.shape)}.")
    for value, hint in mistakes:
        if _same(got, value):
            raise ExerciseError(hint)
    difference = float((got.float() - want.float()).abs().max())
    raise ExerciseError(f"the numbers differ from the package's (largest difference {difference:.3g}). {advice}")


def _calls_recorded(modules: dict):
    """Forward hooks recording which of ``modules`` (name -> module) get called: (calls, remove)."""
    calls = []
    handles = [module.register_forward_pre_hook(lambda module, args, name=name: calls.append(name))
               for name, module in modules.items()]
    return calls, lambda: [handle.remove() for handle in handles]


def _seeded_model(seed: int, **sizes) -> NDT1:
    """An eval-mode NDT1 whose LayerNorms have random gains and biases, so that where a norm sits
    (pre- vs post-norm, final norm or not) changes the numbers."""
    torch.manual_seed(seed)
    model = NDT1(**sizes).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.3)
    return model


def check_attention(fn):
    """Exercise 4a: ``fn(q, k, v) -> softmax(q k^T / sqrt(d)) v``, q, k, v (B, T, d) -> (B, T, d)."""

    def check(fn):
        g = torch.Generator().manual_seed(5)
        q, k, v = (2.0 * torch.randn(2, 6, 8, generator=g) for _ in range(3))  # B=2, T=6, d=8
        got = fn(q, k, v)
        want = ndt1_by_hand.scaled_dot_product_attention(q, k, v)
        if not _same(got, want):
            scores = q @ k.transpose(-2, -1)
            if torch.is_tensor(got) and got.shape == (2, 6, 6):
                raise ExerciseError("the output is (B, T, T): those are the attention weights; "
                                    "return weights @ v, shaped like v.")
            _name_the_mistake(got, want, [
                (scores.softmax(-1) @ v, "the scores are not scaled: divide q @ k^T by sqrt(d) (d = q.shape[-1]) "
                 "before the softmax, or large dot products saturate it."),
                ((scores / 8).softmax(-1) @ v, "the scores are divided by d; divide by sqrt(d) (math.sqrt(q.shape[-1]))."),
                ((scores / 8 ** 0.5).softmax(-2) @ v, "the softmax runs over the wrong axis (the queries): use "
                 "softmax(dim=-1), so each query's weights over the keys sum to 1."),
                ((scores / 8 ** 0.5).softmax(0) @ v, "the softmax runs over the batch axis: use softmax(dim=-1), "
                 "so each query's weights over the keys sum to 1."),
                ((scores.transpose(-2, -1) / 8 ** 0.5).softmax(-1) @ v,
                 "queries and keys are swapped: the scores are q @ k.transpose(-2, -1), row t for query t."),
            ], "Compute scores = q @ k.transpose(-2, -1) / sqrt(d), weights = scores.softmax(dim=-1), "
               "and return weights @ v.")
        result = on_second_device(fn, tuple(t.to(SECOND_DEVICE) for t in (q, k, v)),
                                  "Build everything from q, k and v (or create tensors with device=q.device).")
        expect_on_device(result, "the attention output", "Build it only from q, k and v.")

    return run_check("Exercise 4a (attention)", fn, ndt1_by_hand.scaled_dot_product_attention, check)


def check_encoder_layer(fn):
    """Exercise 4b: ``fn(x, layer) -> x``, one pre-norm encoder layer with ``layer``'s weights, (B, T, D)."""

    def check(fn):
        layer = _seeded_model(6, n_neurons=8, n_bins=10, n_heads=1).core.layers.layers[0]
        x = torch.randn(3, 10, 8, generator=torch.Generator().manual_seed(6))
        calls, stop_recording = _calls_recorded({"layer(x)": layer, "layer.self_attn(...)": layer.self_attn})
        try:
            with torch.no_grad():
                got = fn(x, layer)
        finally:
            stop_recording()
        with torch.no_grad():
            want = layer(x)
            if calls and _same(got, want):
                raise ExerciseError(f"you called PyTorch's own module ({calls[0]}), which does the work for you; "
                                    "write the layer from its parts: layer.norm1, layer.self_attn.in_proj_weight "
                                    "and in_proj_bias, your attention(q, k, v), layer.self_attn.out_proj, "
                                    "layer.norm2, layer.linear1, F.gelu and layer.linear2.")
            if not _same(got, want):
                attn = lambda h: ndt1_by_hand.self_attention(h, layer.self_attn)  # noqa: E731
                feed_forward = lambda h: layer.linear2(F.gelu(layer.linear1(h)))  # noqa: E731
                post = layer.norm1(x + attn(x))
                relu = x + attn(layer.norm1(x))
                _name_the_mistake(got, want, [
                    (layer.norm2(post + feed_forward(post)), "this is a post-norm layer (LayerNorm after each "
                     "residual sum). NDT1 uses pre-norm: normalise the *input* of each block and add the block's "
                     "output to the un-normalised x: x = x + attention(norm1(x)); x = x + feed_forward(norm2(x))."),
                    (feed_forward(layer.norm2(attn(layer.norm1(x)))), "the residual connections are missing: "
                     "*add* each block's output to x (x = x + ...), do not replace x with it."),
                    (relu + layer.linear2(F.relu(layer.linear1(layer.norm2(relu)))),
                     "the feed-forward block uses ReLU; this layer was built with GELU (F.gelu)."),
                    (x + attn(x) + feed_forward(layer.norm2(x + attn(x))),
                     "attention reads x itself; it should read layer.norm1(x) (pre-norm)."),
                ], "Pre-norm layer: h = norm1(x); q, k, v = F.linear(h, in_proj_weight, in_proj_bias).chunk(3, "
                   "dim=-1); x = x + out_proj(attention(q, k, v)); x = x + linear2(gelu(linear1(norm2(x)))).")
        meta_layer = copy.deepcopy(layer).to(SECOND_DEVICE)
        result = on_second_device(fn, (x.to(SECOND_DEVICE), meta_layer),
                                  "Use only x and the layer's own weights (they move with the model).")
        expect_on_device(result, "the layer's output", "Build it only from x and the layer's weights.")

    return run_check("Exercise 4b (encoder layer)", fn, ndt1_by_hand.encoder_layer, check)


def check_ndt1_forward(fn):
    """Exercise 4c: ``fn(model, spikes) -> log_rates``, the whole NDT1 forward pass with ``model``'s weights."""

    def check(fn):
        # d_model != n_neurons, so the read-in is a real linear layer; fewer bins than the model allows
        model = _seeded_model(7, n_neurons=6, n_bins=12, d_model=8, n_layers=2, n_heads=1)
        spikes = torch.poisson(torch.full((3, 10, 6), 1.5), generator=torch.Generator().manual_seed(7))
        core_calls = {"model(spikes)": model, "model.core(...)": model.core, "model.core.layers(...)": model.core.layers}
        core_calls.update({f"model.core.layers.layers[{i}](...)": layer for i, layer in enumerate(model.core.layers.layers)})
        calls, stop_recording = _calls_recorded(core_calls)
        try:
            with torch.no_grad():
                got = fn(model, spikes)
        finally:
            stop_recording()
        with torch.no_grad():
            want = model(spikes)
            if calls and _same(got, want):
                raise ExerciseError(f"you called the package's own transformer ({calls[0]}); run the layers "
                                    "through your encoder_layer(x, layer), one per layer in model.core.layers.layers.")
            if not _same(got, want):
                def by_hand(x, final_norm=True):
                    for layer in model.core.layers.layers:
                        x = ndt1_by_hand.encoder_layer(x, layer)
                    return model.read_out(model.core.norm(x) if final_norm else x)
                tokens = model.read_in(spikes)
                with_position = tokens + model.core.positional_encoding[:10]
                _name_the_mistake(got, want, [
                    (by_hand(tokens), "no positional encoding: add positional_encoding(T, D) to the tokens before "
                     "the first layer. Without it attention cannot tell bin 3 from bin 30."),
                    (by_hand(with_position, final_norm=False), "the final LayerNorm is missing: apply "
                     "model.core.norm to the last layer's output, before model.read_out."),
                    (model.read_out(model.core.norm(with_position)), "the encoder layers are skipped: run x through "
                     "encoder_layer(x, layer) for each layer in model.core.layers.layers."),
                ], "Steps: tokens = model.read_in(spikes); x = tokens + positional encoding; x = encoder_layer(x, "
                   "layer) for each layer; return model.read_out(model.core.norm(x)).")
        meta_model = copy.deepcopy(model).to(SECOND_DEVICE)
        result = on_second_device(fn, (meta_model, spikes.to(SECOND_DEVICE)),
                                  "A table built with torch.zeros/arange (e.g. your positional_encoding) lives on "
                                  "the CPU: move it with .to(spikes.device), or use model.core.positional_encoding, "
                                  "a buffer that moves with the model.")
        expect_on_device(result, "the log-rates", "Build them from the spikes and the model's weights.")

    return run_check("Exercise 4c (NDT1 forward pass)", fn, ndt1_by_hand.ndt1_forward, check)
