"""A Mamba backbone (Gu & Dao, 2023): tokens (B, T, D) -> (B, T, D), causal, linear in T.

One block mixes information along time with a *selective* state-space model (selective_scan.py):

    x (B, T, D) --in_proj--> [u, z] (B, T, 2 E)                  E = expand * D inner channels
    u --causal depthwise conv1d (width d_conv)--> silu --> u      local context, past bins only
    u --x_proj--> [dt (rank R), B (N), C (N)] per bin             the "selective" part: from the input
    delta = softplus(dt_proj(dt))  (B, E, T)                      step size per channel and bin
    y = selective_scan(u, delta, A = -exp(A_log), B, C, D, z)     (B, E, T), gated by silu(z)
    out = out_proj(y)  (B, T, D)

:class:`MambaBlock` has exactly the parameters (names, shapes) and initialisation of
``mamba_ssm.Mamba`` (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj), so a state dict loads
into either. :class:`MambaBackbone` stacks pre-norm residual blocks, x + block(norm(x)), and ends
with a norm, as mamba-ssm's language model does. Every operation looks at the current and past bins
only, so the backbone is causal by construction (``bidirectional=True`` adds a second stack run
backwards in time, for masked modelling where the future is allowed).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .selective_scan import IMPLEMENTATIONS, selective_scan

BLOCK_IMPLEMENTATIONS = ("pytorch", "mamba_ssm")


@dataclass
class MambaConfig:
    """Everything needed to rebuild a :class:`MambaBackbone` (saved next to its weights).

    The block fields have mamba_ssm.Mamba's names and defaults.
    """

    d_model: int
    n_layers: int = 2
    d_state: int = 16           # N, the state size per channel
    d_conv: int = 4             # width of the causal depthwise convolution
    expand: int = 2             # E = expand * d_model inner channels
    dt_rank: int | str = "auto"  # R, rank of the step-size projection; "auto" = ceil(d_model / 16)
    dt_min: float = 0.001       # initial step sizes are log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1
    dt_init: str = "random"     # dt_proj.weight init: "random" (uniform) or "constant"
    dt_scale: float = 1.0
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False          # biases of in_proj / out_proj
    dropout: float = 0.0        # on each block's output, before the residual sum
    bidirectional: bool = False  # add a backward-in-time stack (not causal then)
    block: str = "pytorch"      # "pytorch" (MambaBlock) or "mamba_ssm" (its Mamba module; CUDA only)
    scan: str = "auto"          # MambaBlock's scan: "auto" | "kernel" | "parallel" | "sequential"

    def __post_init__(self):
        if self.d_model < 1 or self.n_layers < 1:
            raise ValueError(f"d_model and n_layers must be positive, got {self.d_model} and {self.n_layers}")
        if self.block not in BLOCK_IMPLEMENTATIONS:
            raise ValueError(f"block must be one of {BLOCK_IMPLEMENTATIONS}, got {self.block!r}")
        if self.scan not in IMPLEMENTATIONS:
            raise ValueError(f"scan must be one of {IMPLEMENTATIONS}, got {self.scan!r}")
        if self.dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant', got {self.dt_init!r}")

    def block_kwargs(self) -> dict:
        """The keyword arguments a MambaBlock and mamba_ssm.Mamba both take."""
        names = ("d_model", "d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max", "dt_init", "dt_scale",
                 "dt_init_floor", "conv_bias", "bias")
        return {name: getattr(self, name) for name in names}


class MambaBlock(nn.Module):
    """One Mamba mixer: (B, T, D) -> (B, T, D); parameters and init as ``mamba_ssm.Mamba``.

    Parameters (E = expand * d_model, N = d_state, R = dt_rank):
        in_proj  Linear(D, 2E)        conv1d  depthwise Conv1d(E, E, d_conv), weight (E, 1, d_conv)
        x_proj   Linear(E, R + 2N)    dt_proj Linear(R, E)           A_log (E, N)    D (E,)
        out_proj Linear(E, D)
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1, dt_init: str = "random",
                 dt_scale: float = 1.0, dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False,
                 scan: str = "auto", device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.scan = d_model, d_state, d_conv, scan
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        # groups = channels: each channel convolves its own past (d_conv bins); padding d_conv - 1 on
        # both sides, and forward() keeps the first T outputs, so output t sees inputs t-d_conv+1..t.
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1,
                                bias=conv_bias, **factory)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

        # dt_proj.weight: small, so that the initial step sizes are set by the bias alone.
        std = self.dt_rank ** -0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                self.dt_proj.weight.fill_(std)
            else:
                self.dt_proj.weight.uniform_(-std, std)
            # dt_proj.bias: softplus(bias) = dt, log-uniform in [dt_min, dt_max] per channel, so the
            # channels start with time scales from a few bins to a few hundred.
            dt = torch.exp(torch.rand(self.d_inner, **factory) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.dt_proj.bias._no_reinit = True  # mamba-ssm's marker: a model-wide re-init keeps this bias

        # S4D-real: A[:, n] = -(n + 1) for every channel, stored as log so A stays negative.
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))  # skip connection per channel
        self.D._no_weight_decay = True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        if hidden.dim() != 3 or hidden.shape[-1] != self.d_model:
            raise ValueError(f"MambaBlock expects (batch, time, d_model={self.d_model}) tokens, "
                             f"got shape {tuple(hidden.shape)}")
        n_bins = hidden.shape[1]
        u, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)           # 2 x (B, E, T)
        u = F.silu(self.conv1d(u)[..., :n_bins])                              # causal: drop the tail
        dt, B, C = self.x_proj(u.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)             # (B, E, T); bias goes in the scan
        A = -torch.exp(self.A_log.float())                                    # (E, N), negative
        y = selective_scan(u, delta, A, B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z=z,
                           delta_bias=self.dt_proj.bias.float(), delta_softplus=True, implementation=self.scan)
        return self.out_proj(y.transpose(1, 2))                               # (B, T, D)


def _mixer(config: MambaConfig) -> nn.Module:
    if config.block == "pytorch":
        return MambaBlock(**config.block_kwargs(), scan=config.scan)
    try:
        from mamba_ssm import Mamba
    except (ImportError, OSError, RuntimeError) as error:
        raise ImportError("MambaConfig(block='mamba_ssm') needs mamba-ssm, built for CUDA (see README.md, "
                          "'mamba-ssm on a CUDA machine'); block='pytorch' runs anywhere and uses the "
                          f"mamba-ssm kernel by itself when it can ({error})") from error
    return Mamba(**config.block_kwargs())


class _Residual(nn.Module):
    """x + dropout(mixer(norm(x))): the pre-norm residual block."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.norm = nn.RMSNorm(config.d_model, eps=1e-5)
        self.mixer = _mixer(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.mixer(self.norm(x)))


class MambaBackbone(nn.Module):
    """A stack of Mamba blocks: tokens (B, T, D) -> latents (B, T, D), D = ``config.d_model``.

    Causal: the output at bin t depends on bins <= t only, so ``causal`` is accepted (for the
    same call signature as ``TransformerCore``) and changes nothing. A ``bidirectional`` backbone
    adds a second stack that reads the sequence backwards; ``causal=True`` then runs the forward
    stack alone (its output at t still only sees bins <= t).
    """

    config_class = MambaConfig

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = config
        self.d_model = config.d_model
        self.layers = nn.ModuleList(_Residual(config) for _ in range(config.n_layers))
        self.backward_layers = (nn.ModuleList(_Residual(config) for _ in range(config.n_layers))
                                if config.bidirectional else None)
        self.norm = nn.RMSNorm(config.d_model, eps=1e-5)
        # GPT-2 / mamba-ssm: shrink each residual branch's last projection by 1/sqrt(n_layers), so
        # the residual stream's variance does not grow with depth at initialisation.
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if name.endswith("out_proj.weight"):
                    parameter /= math.sqrt(config.n_layers)

    @classmethod
    def from_config(cls, config: MambaConfig | dict) -> "MambaBackbone":
        return cls(config if isinstance(config, MambaConfig) else MambaConfig(**config))

    def forward(self, tokens: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        if tokens.dim() != 3 or tokens.shape[-1] != self.d_model:
            raise ValueError(f"MambaBackbone expects tokens of shape (batch, time, d_model={self.d_model}), "
                             f"got {tuple(tokens.shape)}")
        if torch.is_tensor(causal):
            raise ValueError("MambaBackbone takes causal=True/False, not an attention mask: a scan has no mask "
                             "(it is causal by construction; bidirectional=True adds the backward direction)")
        x = tokens
        for layer in self.layers:
            x = layer(x)
        if self.backward_layers is not None and not causal:
            backward = tokens.flip(1)
            for layer in self.backward_layers:
                backward = layer(backward)
            x = x + backward.flip(1)
        return self.norm(x)

    def config_dict(self) -> dict:
        return asdict(self.config)


def apply_in_windows(backbone: nn.Module, tokens: torch.Tensor, window: int, burn_in: int = 0) -> torch.Tensor:
    """Run a causal backbone over a long recording (B, T, D) window by window -> (B, T, D).

    Each window of ``window`` bins starts ``burn_in`` bins early; the outputs of those extra bins are
    dropped, so every kept output has seen at least ``burn_in`` bins of past (as it would in one
    pass over the whole recording, for a model whose memory is shorter than that). Memory and time
    per window stay fixed however long the recording is.
    """
    if tokens.dim() != 3:
        raise ValueError(f"tokens must be (batch, time, d_model), got shape {tuple(tokens.shape)}")
    if window < 1 or burn_in < 0:
        raise ValueError(f"window must be >= 1 and burn_in >= 0 bins, got window={window}, burn_in={burn_in}")
    outputs = []
    for start in range(0, tokens.shape[1], window):
        first = max(0, start - burn_in)
        out = backbone(tokens[:, first:start + window])
        outputs.append(out[:, start - first:])
    return torch.cat(outputs, dim=1)
