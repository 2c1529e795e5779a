"""NDT1-stitch: one shared NDT1 core, with a linear read-in and read-out per recording session.

Different sessions record different neurons, so a population vector from session A means nothing
to session B. Stitching gives each session its own linear map into a shared latent space
(``read_in``), a learned session embedding added to every token, and its own map back out to its
units (``read_out``). The transformer core in between is shared, so it learns dynamics from all
sessions at once.

    spikes_s (B, T, N_in[s]) --read_in[s]--> (B, T, D) + embedding[s] --core--> latents (B, T, D)
    latents --read_out[s]--> log-rates (B, T, N_out[s])

Batches may mix sessions: trials are padded to the widest session (see data/sessions.py) and a
``session`` index per trial routes each one through its own read-in/read-out (every session's
layer sees the batch and a 0/1 weight keeps its own trials; :func:`stitch_forward` writes it out).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..data.counts import log_mean_rates
from .ndt1 import TransformerCore


@dataclass
class NDT1StitchConfig:
    """Everything needed to rebuild an :class:`NDT1Stitch` (saved next to its weights)."""

    n_inputs: list[int]
    n_bins: int
    n_outputs: list[int] | None = None
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    dropout: float = 0.1
    session_names: list[str] | None = None
    n_prompts: int = 0  # MtM: learned prompt tokens, one per masking scheme (0: none; older checkpoints)


class NDT1Stitch(nn.Module):
    """Multi-session NDT1. Shapes: spikes (B, T, max N_in), session (B,) -> log-rates (B, T, max N_out).

    Args:
        n_inputs: units fed to the model, per session (e.g. NLB's held-in units).
        n_outputs: units predicted, per session; defaults to ``n_inputs``. With NLB data the
            first ``n_inputs[s]`` outputs are the held-in units, the rest the held-out ones.
        n_bins: longest sequence; d_model, n_layers, n_heads, dropout: the shared core.
    Sessions are numbered in the order given; ``session_names[i]`` is session i.
    ``n_prompts`` > 0 adds that many learned prompt tokens (Notebook 4's multi-task masking: one per
    masking scheme, masking.SCHEME_NAMES). Given ``prompt`` (B,) ids, the chosen token is put before
    each trial's bins, attended to by every bin, and dropped before the read-out.
    """

    config_class = NDT1StitchConfig

    def __init__(self, n_inputs: list[int], n_bins: int, n_outputs: list[int] | None = None,
                 d_model: int = 64, n_layers: int = 2, n_heads: int = 4, dropout: float = 0.1,
                 session_names: list[str] | None = None, n_prompts: int = 0):
        super().__init__()
        if isinstance(n_prompts, bool) or not isinstance(n_prompts, int) or n_prompts < 0:
            raise ValueError(f"n_prompts must be a whole number >= 0, got {n_prompts!r}")
        self.config = NDT1StitchConfig(list(n_inputs), n_bins, list(n_outputs) if n_outputs is not None else None,
                                       d_model, n_layers, n_heads, dropout,
                                       list(session_names) if session_names else None, n_prompts)
        n_outputs = list(n_outputs) if n_outputs is not None else list(n_inputs)
        if len(n_outputs) != len(n_inputs):
            raise ValueError(f"n_inputs has {len(n_inputs)} sessions but n_outputs has {len(n_outputs)}")
        self.n_inputs, self.n_outputs = list(n_inputs), n_outputs
        self.session_names = list(session_names) if session_names else [f"session {i}" for i in range(len(n_inputs))]
        self.read_in = nn.ModuleList(nn.Linear(n, d_model) for n in n_inputs)
        self.session_embedding = nn.Embedding(len(n_inputs), d_model)
        self.core = TransformerCore(d_model, n_bins, n_layers, n_heads, dropout)
        self.read_out = nn.ModuleList(nn.Linear(d_model, n, bias=True) for n in n_outputs)
        nn.init.normal_(self.session_embedding.weight, std=0.02)
        if n_prompts:
            self.prompt_embedding = nn.Embedding(n_prompts, d_model)
            nn.init.normal_(self.prompt_embedding.weight, std=0.02)

    @classmethod
    def from_config(cls, config: NDT1StitchConfig) -> "NDT1Stitch":
        return cls(**asdict(config))

    def latents(self, spikes: torch.Tensor, session: torch.Tensor, causal: bool = False,
                prompt: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, max N_in) padded counts, (B,) session ids [, (B,) prompt ids] -> (B, T, D) shared latents."""
        spikes = nn.functional.pad(spikes, (0, max(self.n_inputs) - spikes.shape[2]))  # a batch of narrow sessions
        # Every read-in sees the whole batch and a 0/1 weight keeps each trial's own session: no
        # data-dependent indexing, so no GPU sync, and it runs on `meta` tensors too.
        tokens = sum(self.read_in[s](spikes[:, :, :n]) * (session == s)[:, None, None]
                     for s, n in enumerate(self.n_inputs))
        tokens = tokens + self.session_embedding(session)[:, None, :]
        return self.core(tokens, causal=causal, prefix=self.prompt_tokens(prompt, tokens))

    def prompt_tokens(self, prompt: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor | None:
        """(B,) prompt ids (or one id for all) -> (B, 1, D) prompt tokens (None for no prompt)."""
        if prompt is None:
            return None
        if not self.config.n_prompts:
            raise ValueError("this model has no prompt tokens (built with n_prompts=0): call it without prompt=, "
                             "or train one with fit_ndt1_stitch(..., prompts=True)")
        prompt = torch.as_tensor(prompt, device=tokens.device)
        if prompt.dim() == 0:  # one id for every trial
            prompt = prompt.expand(tokens.shape[0])
        if prompt.dtype not in (torch.int32, torch.int64) or tuple(prompt.shape) != (tokens.shape[0],):
            raise ValueError(f"prompt must be one integer id or (trials,) = ({tokens.shape[0]},) integer ids, got "
                             f"{tuple(prompt.shape)} {prompt.dtype}")
        if prompt.device.type == "cpu" and bool(((prompt < 0) | (prompt >= self.config.n_prompts)).any()):
            raise ValueError(f"prompt ids must be 0..{self.config.n_prompts - 1}, got {prompt.tolist()}")  # (on GPUs: no sync)
        return self.prompt_embedding(prompt)[:, None, :]

    def forward(self, spikes: torch.Tensor, session: torch.Tensor, causal: bool = False,
                prompt: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, max N_in), (B,) [, (B,) prompt] -> (B, T, max N_out) log-rates; padded units get log-rate 0."""
        return self.log_rates_from_latents(self.latents(spikes, session, causal, prompt), session)

    def log_rates_from_latents(self, latents: torch.Tensor, session: torch.Tensor) -> torch.Tensor:
        """(B, T, D) latents, (B,) -> (B, T, max N_out) log-rates through each session's read-out."""
        width = max(self.n_outputs)
        return sum(nn.functional.pad(self.read_out[s](latents), (0, width - n)) * (session == s)[:, None, None]
                   for s, n in enumerate(self.n_outputs))

    def unit_embeddings(self, s: int, layer: str = "read_out") -> torch.Tensor:
        """One D-dim vector per unit of session s, from its read-out (N_out[s], D) or read-in (N_in[s], D).

        A read-out row is the unit's tuning to the shared latents; a read-in column is how much
        the unit votes for each latent dimension.
        """
        if layer == "read_out":
            return self.read_out[s].weight.detach().cpu()
        if layer == "read_in":
            return self.read_in[s].weight.detach().T.cpu()
        raise ValueError(f"layer must be 'read_out' or 'read_in', got {layer!r}")

    def output_mask(self, session: torch.Tensor) -> torch.Tensor:
        """(B, max N_out) bool: True for the units that exist in each trial's session."""
        sizes = torch.tensor(self.n_outputs, device=session.device)[session]
        return torch.arange(max(self.n_outputs), device=session.device)[None, :] < sizes[:, None]

    def input_mask(self, session: torch.Tensor) -> torch.Tensor:
        """(B, max N_out) bool: True for the outputs that are also inputs (masked-bin targets)."""
        sizes = torch.tensor(self.n_inputs, device=session.device)[session]
        return torch.arange(max(self.n_outputs), device=session.device)[None, :] < sizes[:, None]


def stitch_forward(model: NDT1Stitch, spikes: torch.Tensor, session: torch.Tensor) -> torch.Tensor:
    """NDT1-stitch's forward pass with the routing written out (the reference of Notebook 2's exercise).

    spikes (B, T, max N_in) zero-padded counts, session (B,) ids -> log-rates (B, T, max N_out), the
    padded outputs 0. Equals ``model(spikes, session)`` in eval mode (no dropout), number for number.
    Every session's layer sees the whole batch and a 0/1 weight keeps only its own trials: the
    shapes never depend on the data, so it runs the same on any device (and on ``meta`` tensors).
    """
    tokens = 0
    for s, read_in in enumerate(model.read_in):
        own = (session == s)[:, None, None]  # (B, 1, 1): True for session s's trials
        tokens = tokens + read_in(spikes[:, :, : read_in.in_features]) * own  # its units only: padding unread
    tokens = tokens + model.session_embedding(session)[:, None, :]  # (B, D), the same for every bin
    latents = model.core(tokens)  # (B, T, D), shared by every session
    width = max(read_out.out_features for read_out in model.read_out)
    log_rates = 0
    for s, read_out in enumerate(model.read_out):
        own = (session == s)[:, None, None]
        log_rates = log_rates + nn.functional.pad(read_out(latents), (0, width - read_out.out_features)) * own
    return log_rates


def swap_session_parts(model: NDT1Stitch, source: int, target: int) -> None:
    """In place: give session ``target`` the read-in and embedding that session ``source`` learned.

    Units of different sessions have no correspondence, so source's read-in columns are laid onto
    target's units in order (cut or zero-padded to target's unit count): exactly the "what if we
    just reuse the other recording's input layer" experiment.
    """
    with torch.no_grad():
        weight = model.read_in[source].weight  # (D, N_in[source])
        n = min(weight.shape[1], model.n_inputs[target])
        model.read_in[target].weight.zero_()
        model.read_in[target].weight[:, :n] = weight[:, :n]
        model.read_in[target].bias.copy_(model.read_in[source].bias)
        model.session_embedding.weight[target] = model.session_embedding.weight[source]


@torch.no_grad()
def start_at_mean_rates(model: NDT1Stitch, sessions: list[torch.Tensor], session_ids: list[int] | None = None) -> None:
    """Set each session's read-out bias to the log of its units' mean count per bin in ``sessions``
    ((trials_s, T, N_out[s]) counts, one per session; ``session_ids``: which of the model's
    sessions they are, default 0, 1, ...), so an untrained read-out predicts each unit's mean rate
    (0 bits/spike) instead of about one spike per bin. At real firing rates (a few hundredths of a
    spike per 10 ms bin) a short run from one spike per bin otherwise ends below the mean-rate
    model. fit_ndt1_stitch and refit_read_in(read_out=True) start there."""
    session_ids = range(len(sessions)) if session_ids is None else session_ids
    for session, counts in zip(session_ids, sessions, strict=True):
        read_out = model.read_out[session]
        log_rates = log_mean_rates(counts)
        if log_rates.shape != read_out.bias.shape:
            raise ValueError(f"counts with {log_rates.numel()} units for a read-out of {read_out.bias.numel()}")
        read_out.bias.copy_(log_rates.to(read_out.bias.device))


def trainable_only(model: NDT1Stitch, session: int, read_out: bool = False) -> None:
    """Freeze everything but session ``session``'s read-in and the session embedding (and, with
    ``read_out=True``, its read-out: needed for a session the model has never seen)."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in model.read_in[session].parameters():
        parameter.requires_grad_(True)
    model.session_embedding.weight.requires_grad_(True)
    if read_out:
        for parameter in model.read_out[session].parameters():
            parameter.requires_grad_(True)


def add_session(model: NDT1Stitch, n_inputs: int, n_outputs: int | None = None, name: str | None = None) -> NDT1Stitch:
    """A copy of ``model`` with one more session (last index): freshly initialised read-in,
    read-out and embedding for it; every trained weight copied. How a new recording joins."""
    config = model.config
    outputs = list(config.n_outputs or config.n_inputs) + [n_outputs or n_inputs]
    names = list(model.session_names) + [name or f"session {len(model.n_inputs)}"]
    device = model.session_embedding.weight.device  # the copy lives where the model lives (GPU, CPU, meta)
    bigger = NDT1Stitch(config.n_inputs + [n_inputs], config.n_bins, outputs, config.d_model, config.n_layers,
                        config.n_heads, config.dropout, names, config.n_prompts).to(device)
    state = model.state_dict()
    with torch.no_grad():
        state["session_embedding.weight"] = torch.cat([state["session_embedding.weight"],
                                                      bigger.session_embedding.weight[-1:].detach()])
    missing, unexpected = bigger.load_state_dict(state, strict=False)
    assert not unexpected and all(f".{len(model.n_inputs)}." in key for key in missing), (missing, unexpected)
    return bigger
