"""Several recording sessions in one tensor, for stitched models.

Sessions record different numbers of units, so each trial is zero-padded to the widest session
and tagged with its session id; the model uses the id to route the trial through its own
read-in and read-out and ignores the padding.
"""
from __future__ import annotations

import torch

from .counts import as_counts


def stack_sessions(sessions: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad and concatenate per-session count arrays.

    Args:
        sessions: list of (trials_s, T, N_s) count arrays; all with the same T.
    Returns:
        spikes: (sum of trials_s, T, max N_s) float32, zero-padded on the unit axis.
        session: (sum of trials_s,) long, the index of each trial's session in ``sessions``.
    """
    arrays = [as_counts(s, f"sessions[{i}]") for i, s in enumerate(sessions)]
    lengths = {a.shape[1] for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"all sessions need the same number of time bins, got {sorted(lengths)}; "
                         "cut trials to a common window first")
    width = max(a.shape[2] for a in arrays)
    spikes = torch.cat([torch.nn.functional.pad(a, (0, width - a.shape[2])) for a in arrays])
    session = torch.cat([torch.full((a.shape[0],), i, dtype=torch.long, device=a.device) for i, a in enumerate(arrays)])
    return spikes, session
