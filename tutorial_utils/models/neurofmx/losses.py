"""One loss from several: fixed weights, or weights learned by uncertainty (Kendall et al., 2018).

The heads' losses live on different scales (a Poisson NLL of ~0.3, an InfoNCE of ~log M), so a
plain sum lets the biggest dominate. Fixed weights need tuning. Uncertainty weighting learns them:
each task i gets a learned log-variance s_i and contributes

    exp(-s_i) * L_i + s_i

A task with a large loss is down-weighted (s_i grows), and the + s_i term stops every weight from
collapsing to zero. For fixed L_i the best s_i is log L_i, where the task's term equals 1 + log L_i.
(Kendall et al. write 1/(2 sigma^2) L + log sigma for regression; with s = log sigma^2 this is the
same up to a factor 1/2, which we drop for every task alike.)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

WEIGHTINGS = ("fixed", "uncertainty")


@dataclass
class TaskWeightsConfig:
    """``weighting``: "fixed" (``weights[name]``, default 1) or "uncertainty" (learned)."""

    names: tuple[str, ...]
    weighting: str = "fixed"
    weights: dict[str, float] = field(default_factory=dict)


class MultiTaskLoss(nn.Module):
    """Named losses -> the same dict plus the weighted ``"total"`` (what training.train optimises).

    Shapes: every loss a scalar. Learned log-variances (uncertainty weighting) are parameters of
    this module, so they train with the model when the module is part of it.
    """

    def __init__(self, names, weighting: str = "fixed", weights: dict[str, float] | None = None):
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        weights = dict(weights or {})
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"weights given for {sorted(unknown)}, which are not tasks of this loss {list(names)}")
        self.names, self.weighting = tuple(names), weighting
        self.fixed = {name: float(weights.get(name, 1.0)) for name in self.names}
        self.log_vars = nn.ParameterDict({name: nn.Parameter(torch.zeros(())) for name in self.names}) \
            if weighting == "uncertainty" else None

    def weight(self, name: str) -> float:
        """The current weight of task ``name``: its fixed weight, or exp(-s) when learned."""
        return float(torch.exp(-self.log_vars[name].detach())) if self.log_vars is not None else self.fixed[name]

    def forward(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [name for name in losses if name not in self.names]
        if missing:
            raise ValueError(f"losses {missing} have no weight; this loss knows {list(self.names)}")
        if not losses:
            raise ValueError("no losses to combine: enable at least one head")
        total = 0.0
        for name, loss in losses.items():
            if self.log_vars is None:
                total = total + self.fixed[name] * loss
            else:
                log_var = self.log_vars[name]
                total = total + torch.exp(-log_var) * loss + log_var
        return {**losses, "total": total}
