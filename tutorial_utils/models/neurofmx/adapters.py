"""Adapters: the small, session-specific parts, so a frozen model can take a new recording.

* :class:`UnitIDAdapter` — who each unit of one session is: its unit embeddings (N, D), used both
  for the unit's input tokens and for its output query. Optionally low-rank (a bottleneck of
  ``rank`` numbers per unit times a shared (rank, D) map), so a new session costs few parameters.
* :class:`SessionStitcher` — per-session scale and shift of every token (FiLM), which absorbs a
  session's overall drift (gains, baselines) so the shared parts need not.

A new session (:func:`add_session`) gets a fresh unit-ID adapter and stitcher entry; with
:func:`freeze_all_but_session` only those train, the backbone and heads stay frozen.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ...data.counts import log_mean_rates


class UnitIDAdapter(nn.Module):
    """The unit embeddings of one session: () -> (n_units, D), and each unit's baseline log-rate (n_units,).

    ``rank=None``: a free (n_units, D) table. ``rank=r``: codes (n_units, r) @ basis (r, D).
    """

    def __init__(self, n_units: int, d_model: int, rank: int | None = None):
        super().__init__()
        if n_units < 1:
            raise ValueError(f"a session needs at least one unit, got n_units={n_units}")
        self.n_units, self.rank = n_units, rank
        # each unit's baseline log-rate, added by the rate heads (see set_baseline_rates)
        self.log_rate_bias = nn.Parameter(torch.zeros(n_units))
        if rank is None:
            self.table = nn.Parameter(torch.randn(n_units, d_model) * 0.5)
        else:
            self.codes = nn.Parameter(torch.randn(n_units, rank))
            self.basis = nn.Parameter(torch.randn(rank, d_model) * 0.5 / rank ** 0.5)

    def forward(self) -> torch.Tensor:
        return self.table if self.rank is None else self.codes @ self.basis


class SessionStitcher(nn.Module):
    """Per-session FiLM on tokens: tokens (B, ..., D), session (B,) -> tokens * (1 + scale[s]) + shift[s].

    One parameter pair per session, in lists (not one table), so freezing the old sessions
    really freezes them (weight decay cannot touch a parameter without a gradient).
    """

    def __init__(self, n_sessions: int, d_model: int):
        super().__init__()
        self.scale = nn.ParameterList(nn.Parameter(torch.zeros(d_model)) for _ in range(n_sessions))
        self.shift = nn.ParameterList(nn.Parameter(torch.zeros(d_model)) for _ in range(n_sessions))

    def append(self) -> None:
        d_model = self.scale[0].shape[0]
        device = self.scale[0].device
        self.scale.append(nn.Parameter(torch.zeros(d_model, device=device)))
        self.shift.append(nn.Parameter(torch.zeros(d_model, device=device)))

    def forward(self, tokens: torch.Tensor, session: torch.Tensor) -> torch.Tensor:
        view = (len(session),) + (1,) * (tokens.dim() - 2) + (-1,)
        scale = torch.stack(list(self.scale))[session].view(view)
        shift = torch.stack(list(self.shift))[session].view(view)
        return tokens * (1 + scale) + shift


def add_session(model, n_inputs: int, n_outputs: int | None = None, rank: int | None = None):
    """A copy of ``model`` with one more session (the last index): fresh unit-ID adapter and
    stitcher entry; every trained weight copied. ``n_outputs`` defaults to ``n_inputs``."""
    n_outputs = n_outputs or n_inputs
    if n_inputs > n_outputs:
        raise ValueError(f"n_inputs={n_inputs} > n_outputs={n_outputs}: inputs are the first outputs")
    bigger = copy.deepcopy(model)
    device = next(model.parameters()).device
    bigger.unit_adapters.append(UnitIDAdapter(n_outputs, model.config.d_model, rank).to(device))
    bigger.stitcher.append()
    bigger.config.n_inputs = list(model.config.n_inputs) + [n_inputs]
    bigger.config.n_outputs = list(model.config.n_outputs) + [n_outputs]
    return bigger


def freeze_all_but_session(model, session: int) -> list[str]:
    """Freeze every parameter except session ``session``'s unit-ID adapter and stitcher entry.

    Returns the names of the parameters left trainable. Undo with ``requires_grad_(True)``.
    """
    if not 0 <= session < len(model.unit_adapters):
        raise ValueError(f"session {session} does not exist: the model has {len(model.unit_adapters)} sessions")
    trainable = [model.unit_adapters[session], model.stitcher.scale[session], model.stitcher.shift[session]]
    keep = {id(p) for part in trainable for p in (part.parameters() if isinstance(part, nn.Module) else [part])}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in keep)
    return [name for name, p in model.named_parameters() if p.requires_grad]


@torch.no_grad()
def set_baseline_rates(model, session: int, counts: torch.Tensor) -> None:
    """Start session ``session``'s baseline log-rates at each unit's mean count in ``counts``
    (trials, T, N_out), so training starts from the mean-rate model instead of spending its first
    steps learning it (the rates' log-mean, floored so silent units stay finite)."""
    adapter = model.unit_adapters[session]
    counts = torch.as_tensor(counts, dtype=torch.float32)
    if counts.dim() != 3 or counts.shape[2] != adapter.n_units:
        raise ValueError(f"counts must be (trials, time bins, {adapter.n_units} units) for session {session}, "
                         f"got {tuple(counts.shape)}")
    adapter.log_rate_bias.copy_(log_mean_rates(counts).to(adapter.log_rate_bias.device))
