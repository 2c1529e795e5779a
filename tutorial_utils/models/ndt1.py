"""NDT1: the Neural Data Transformer (Ye & Pandarinath, 2021), small enough to read in one sitting.

One token = one time bin with all neurons. The token sequence gets positional encodings over time,
goes through a few transformer encoder layers, and a linear read-out gives each neuron's log
firing rate per bin. Trained as a masked autoencoder with a Poisson likelihood (see training.py).

    spikes (B, T, N) --read_in--> tokens (B, T, D) --+pos--> TransformerCore --> latents (B, T, D)
    latents --read_out--> log_rates (B, T, N);  rates = exp(log_rates)

The core is shared with NDT1-stitch (models/stitch.py), which swaps the single read-in/read-out
for one pair per recording session.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


def sinusoidal_positional_encoding(n_bins: int, d_model: int) -> torch.Tensor:
    """The fixed encoding of "Attention is all you need": (n_bins, d_model).

    Column 2i is sin(t / 10000^(2i/d)), column 2i+1 the matching cos; works for odd d_model too.
    """
    position = torch.arange(n_bins, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    encoding = torch.zeros(n_bins, d_model)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return encoding


def causal_attention_mask(n_bins: int, device=None) -> torch.Tensor:
    """(T, T) bool mask, True above the diagonal: bin t may attend to bins <= t only."""
    return torch.triu(torch.ones(n_bins, n_bins, dtype=torch.bool, device=device), diagonal=1)


class TransformerCore(nn.Module):
    """Positional encoding + a stack of transformer encoder layers: (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, n_bins: int, n_layers: int = 2, n_heads: int = 1,
                 dropout: float = 0.1, ff_mult: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.register_buffer("positional_encoding", sinusoidal_positional_encoding(n_bins, d_model))
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=ff_mult * d_model, dropout=dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        # enable_nested_tensor only matters for padding masks, which we never use
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor, causal: bool | torch.Tensor = False,
                prefix: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) -> (B, T, D). ``causal``: True applies :func:`causal_attention_mask`; a (T, T) bool
        tensor is used as the attention mask itself (True = may not attend), e.g. one built in a
        notebook exercise. ``prefix``: optional (B, P, D) tokens (e.g. MtM's prompt token) put before the
        sequence *after* the positional encoding (they have no time bin) and dropped from the output;
        under a causal mask every bin still sees them."""
        n_bins = tokens.shape[1]
        if n_bins > self.positional_encoding.shape[0]:
            raise ValueError(f"sequence of {n_bins} bins is longer than the {self.positional_encoding.shape[0]} "
                             "the model was built for (n_bins)")
        x = tokens + self.positional_encoding[:n_bins]
        n_prefix = 0 if prefix is None else prefix.shape[1]
        if prefix is not None:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)
        x = self.dropout(x)
        if torch.is_tensor(causal):
            mask = nn.functional.pad(causal.to(tokens.device), (n_prefix, 0, n_prefix, 0))  # prefix: seen by all
            return self.norm(self.layers(x, mask=mask))[:, n_prefix:]
        mask = causal_attention_mask(n_prefix + n_bins, tokens.device) if causal else None
        return self.norm(self.layers(x, mask=mask, is_causal=causal))[:, n_prefix:]


def run_with_prompt(core: TransformerCore, tokens: torch.Tensor, prompt_tokens: torch.Tensor,
                    causal: bool = False) -> torch.Tensor:
    """The core with one prompt token per trial in front: (B, T, D), (B, 1, D) -> (B, T, D) for the bins.

    The prompt has no time bin, so it gets no positional encoding; every bin may attend to it
    (also under a causal mask: it comes first); it is dropped from the output, so the read-out
    never sees it. Same as ``core(tokens, causal, prefix=prompt_tokens)``.
    """
    return core(tokens, causal, prefix=prompt_tokens)


@dataclass
class NDT1Config:
    """Everything needed to rebuild an :class:`NDT1` (saved next to its weights)."""

    n_neurons: int
    n_bins: int
    d_model: int | None = None
    n_layers: int = 2
    n_heads: int = 1
    dropout: float = 0.1


class NDT1(nn.Module):
    """Single-session NDT1. Shapes: spikes (B, T, N) -> log-rates (B, T, N).

    Args:
        n_neurons: N, the number of recorded units.
        n_bins: T, the longest sequence the positional encoding covers.
        d_model: latent width D; by default D = N, as in the original model (then read_in is the
            identity: each token *is* the population vector).
        n_layers, n_heads, dropout: transformer size and regularisation.
    """

    config_class = NDT1Config

    def __init__(self, n_neurons: int, n_bins: int, d_model: int | None = None, n_layers: int = 2,
                 n_heads: int = 1, dropout: float = 0.1):
        super().__init__()
        self.config = NDT1Config(n_neurons, n_bins, d_model, n_layers, n_heads, dropout)
        d_model = d_model or n_neurons
        self.read_in = nn.Identity() if d_model == n_neurons else nn.Linear(n_neurons, d_model)
        self.core = TransformerCore(d_model, n_bins, n_layers, n_heads, dropout)
        self.read_out = nn.Linear(d_model, n_neurons)

    @classmethod
    def from_config(cls, config: NDT1Config) -> "NDT1":
        return cls(**asdict(config))

    def latents(self, spikes: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """(B, T, N) counts -> (B, T, D) latent states (the core's output)."""
        return self.core(self.read_in(spikes), causal=causal)

    def forward(self, spikes: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """(B, T, N) counts -> (B, T, N) log firing rates (counts per bin)."""
        return self.read_out(self.latents(spikes, causal=causal))
