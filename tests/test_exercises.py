"""Exercise checks: the reference passes, typical mistakes get a specific message, and a skipped
or broken answer falls back to the reference."""
import math

import pytest
import torch
import torch.nn.functional as F

from tutorial_utils.exercises import nb1 as exercises
from tutorial_utils.masking import mask_time_bins
from tutorial_utils.models import ndt1_by_hand
from tutorial_utils.models.ndt1 import sinusoidal_positional_encoding
from tutorial_utils.objectives import masked_poisson_loss


def _not_done(*args):
    raise NotImplementedError


def test_references_pass(capsys):
    assert exercises.check_mask_time_bins(mask_time_bins) is mask_time_bins
    assert exercises.check_masked_poisson_loss(masked_poisson_loss) is masked_poisson_loss
    assert exercises.check_positional_encoding(sinusoidal_positional_encoding) is sinusoidal_positional_encoding
    for check, reference in FORWARD_PASS_CHECKS:
        assert check(reference) is reference
    assert capsys.readouterr().out.count("[ok]") == 6


def test_skipped_exercises_fall_back_and_say_so(capsys):
    for check, reference in [(exercises.check_mask_time_bins, mask_time_bins),
                             (exercises.check_masked_poisson_loss, masked_poisson_loss),
                             (exercises.check_positional_encoding, sinusoidal_positional_encoding),
                             *FORWARD_PASS_CHECKS]:
        assert check(_not_done) is reference
    out = capsys.readouterr().out
    assert out.count("not attempted yet") == 6 and out.count("continues with the reference") == 6


def test_mask_mistakes_are_named(capsys):
    def same_mask_for_all(spikes, ratio, generator=None):
        mask = torch.zeros(spikes.shape[:2], dtype=torch.bool)
        mask[:, :round(ratio * spikes.shape[1])] = True
        return spikes.masked_fill(mask[..., None], 0), mask

    def in_place(spikes, ratio, generator=None):
        masked, mask = mask_time_bins(spikes, ratio, generator)
        spikes[mask] = 0
        return spikes, mask

    assert exercises.check_mask_time_bins(same_mask_for_all) is mask_time_bins
    assert exercises.check_mask_time_bins(in_place) is mask_time_bins
    out = capsys.readouterr().out
    assert "same masked bins" in out and "in place" in out


def test_loss_mistakes_are_named(capsys):
    def all_bins(log_rates, spikes, mask):
        return masked_poisson_loss(log_rates, spikes, torch.ones_like(mask))

    def wrong_sign(log_rates, spikes, mask):
        return -masked_poisson_loss(log_rates, spikes, mask)

    def crashes(log_rates, spikes, mask):
        return log_rates @ spikes  # shape error

    for fn in (all_bins, wrong_sign, crashes):
        assert exercises.check_masked_poisson_loss(fn) is masked_poisson_loss
    out = capsys.readouterr().out
    assert "only the masked bins" in out and "opposite sign" in out and "your code raised RuntimeError" in out


def test_encoding_mistakes_are_named(capsys):
    def swapped(n_bins, d_model):  # cos in the even columns, sin in the odd ones
        pe = sinusoidal_positional_encoding(n_bins, d_model)
        out = pe.clone()
        out[:, 0::2], out[:, 1::2] = pe[:, 1::2], pe[:, 0::2]
        return out

    exercises.check_positional_encoding(swapped)
    assert "swapped" in capsys.readouterr().out


# --- Exercise 4: the forward pass by hand ------------------------------------------------------

FORWARD_PASS_CHECKS = [(exercises.check_attention, ndt1_by_hand.scaled_dot_product_attention),
                       (exercises.check_encoder_layer, ndt1_by_hand.encoder_layer),
                       (exercises.check_ndt1_forward, ndt1_by_hand.ndt1_forward)]


def _attention(scale=True, softmax_dim=-1):
    def attention(q, k, v):
        scores = q @ k.transpose(-2, -1)
        if scale:
            scores = scores / math.sqrt(q.shape[-1])
        return scores.softmax(dim=softmax_dim) @ v
    return attention


@pytest.mark.parametrize("mistake, message", [
    (_attention(scale=False), "not scaled: divide q @ k^T by sqrt(d)"),
    (_attention(softmax_dim=1), "softmax runs over the wrong axis"),
    (lambda q, k, v: (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1), "those are the attention weights"),
])
def test_attention_mistakes_are_named(mistake, message, capsys):
    assert exercises.check_attention(mistake) is ndt1_by_hand.scaled_dot_product_attention
    assert message in capsys.readouterr().out


def _qkv(x, layer):
    return F.linear(x, layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias).chunk(3, dim=-1)


def _layer(pre_norm=True, residual=True, activation=F.gelu):
    def encoder_layer(x, layer):
        attend = lambda h: layer.self_attn.out_proj(ndt1_by_hand.scaled_dot_product_attention(*_qkv(h, layer)))  # noqa: E731
        feed_forward = lambda h: layer.linear2(activation(layer.linear1(h)))  # noqa: E731
        if not pre_norm:
            x = layer.norm1(x + attend(x))
            return layer.norm2(x + feed_forward(x))
        if not residual:
            return feed_forward(layer.norm2(attend(layer.norm1(x))))
        x = x + attend(layer.norm1(x))
        return x + feed_forward(layer.norm2(x))
    return encoder_layer


def test_a_hand_written_layer_passes(capsys):
    correct = _layer()
    assert exercises.check_encoder_layer(correct) is correct
    assert "[ok]" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, message", [
    (_layer(pre_norm=False), "post-norm layer"),
    (_layer(residual=False), "residual connections are missing"),
    (_layer(activation=F.relu), "uses ReLU"),
    (lambda x, layer: layer(x), "PyTorch's own module (layer(x))"),
])
def test_encoder_layer_mistakes_are_named(mistake, message, capsys):
    assert exercises.check_encoder_layer(mistake) is ndt1_by_hand.encoder_layer
    assert message in capsys.readouterr().out


def _forward(position=True, final_norm=True, on_device=True):
    def ndt1_forward(model, spikes):
        x = model.read_in(spikes)
        if position:
            encoding = sinusoidal_positional_encoding(spikes.shape[1], x.shape[-1])
            x = x + (encoding.to(spikes.device) if on_device else encoding)
        for layer in model.core.layers.layers:
            x = _layer()(x, layer)
        return model.read_out(model.core.norm(x) if final_norm else x)
    return ndt1_forward


def test_a_hand_written_forward_pass_passes(capsys):
    correct = _forward()
    assert exercises.check_ndt1_forward(correct) is correct
    assert "[ok]" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, message", [
    (_forward(position=False), "no positional encoding"),
    (_forward(final_norm=False), "final LayerNorm is missing"),
    (_forward(on_device=False), "would crash on a GPU"),
    (lambda model, spikes: model(spikes), "the package's own transformer (model(spikes))"),
])
def test_forward_pass_mistakes_are_named(mistake, message, capsys):
    assert exercises.check_ndt1_forward(mistake) is ndt1_by_hand.ndt1_forward
    assert message in capsys.readouterr().out
