"""NDT1's forward pass written out by hand, one operation per line, on the weights of a package `NDT1`.

:class:`~tutorial_utils.models.ndt1.NDT1` calls PyTorch's ``nn.TransformerEncoderLayer``, which
is fast but opaque. These functions compute exactly the same log-rates from the same weights
(the tests check it), so a reader can see every step; they are the references of Notebook 1's
"build the model" exercise. They are for reading and checking, not training: no dropout (the
model in eval mode), no causal mask.

    spikes (B, T, N) --read_in--> tokens (B, T, D) --+ positional encoding--> x
    x --[encoder_layer] x n_layers--> final LayerNorm --read_out--> log_rates (B, T, N)

    encoder_layer (pre-norm): x = x + attention(norm1(x));  x = x + feed_forward(norm2(x))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over the last two axes: q, k, v (..., T, d) -> (..., T, d).

    Row t of the (T, T) weights says how much query bin t takes from each key bin s; it sums to 1.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T query, T key)
    weights = scores.softmax(dim=-1)  # normalise over the keys, for each query
    return weights @ v


def self_attention(x: torch.Tensor, attn: torch.nn.MultiheadAttention) -> torch.Tensor:
    """Multi-head self-attention with the weights of ``attn``: (B, T, D) -> (B, T, D).

    ``attn.in_proj_weight`` (3D, D) stacks W_q, W_k, W_v; each head attends in its own D / H
    slice; ``attn.out_proj`` mixes the heads back together.
    """
    n_batch, n_bins, d_model = x.shape
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)  # 3 x (B, T, D)

    def split_heads(t):  # (B, T, D) -> (B, H, T, D / H)
        return t.reshape(n_batch, n_bins, attn.num_heads, d_model // attn.num_heads).transpose(1, 2)

    heads = scaled_dot_product_attention(split_heads(q), split_heads(k), split_heads(v))
    return attn.out_proj(heads.transpose(1, 2).reshape(n_batch, n_bins, d_model))


def encoder_layer(x: torch.Tensor, layer: torch.nn.TransformerEncoderLayer) -> torch.Tensor:
    """One pre-norm transformer encoder layer with the weights of ``layer``: (B, T, D) -> (B, T, D).

    Each block reads a LayerNorm-ed copy of x and *adds* its result to x (the residual stream).
    """
    x = x + self_attention(layer.norm1(x), layer.self_attn)  # tokens exchange information
    x = x + layer.linear2(F.gelu(layer.linear1(layer.norm2(x))))  # each token on its own (D -> 4D -> D)
    return x


def ndt1_forward(model, spikes: torch.Tensor) -> torch.Tensor:
    """The log-rates of a package ``NDT1`` (eval mode), computed step by step: (B, T, N) -> (B, T, N)."""
    tokens = model.read_in(spikes)  # (B, T, D); the identity when D = N
    x = tokens + model.core.positional_encoding[: spikes.shape[1]]  # which bin each token is
    for layer in model.core.layers.layers:
        x = encoder_layer(x, layer)
    return model.read_out(model.core.norm(x))  # (B, T, N) log firing rates


def attention_weights(model, spikes: torch.Tensor) -> list[torch.Tensor]:
    """The softmax weights of every layer of a package ``NDT1`` on ``spikes``: one (B, H, T, T)
    tensor per layer; row t says how much query bin t takes from each key bin."""
    weights = []
    with torch.no_grad():
        x = model.read_in(spikes) + model.core.positional_encoding[: spikes.shape[1]]
        for layer in model.core.layers.layers:
            attn, h = layer.self_attn, layer.norm1(x)
            n_batch, n_bins, d_model = h.shape
            q, k, _ = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
            q, k = (t.reshape(n_batch, n_bins, attn.num_heads, -1).transpose(1, 2) for t in (q, k))
            weights.append((q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1))
            x = encoder_layer(x, layer)
    return weights
