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


def stitched_batch(sessions: list, session_ids: list[int] | None = None, n_inputs: list[int] | None = None,
                   width: int | None = None, unit_areas: list | None = None):
    """A :class:`~tutorial_utils.batches.Batch` of several sessions for a stitched model.

    Args:
        sessions: list of (trials_s, T, N_s) count arrays: every unit of the session, inputs first.
        session_ids: the model's index of each session (default 0, 1, ...).
        n_inputs: the model's input-unit count per session *id* (default: every unit is an input);
            the remaining units are targets only (NLB's held-out units).
        width: pad the targets to this many units (the model's widest session; default the widest given).
        unit_areas: optional list of (N_s,) brain-area codes per session (for region masking).
    Returns:
        Batch with spikes (inputs), targets, session, unit_exists, unit_is_input (and unit_areas).
    """
    from ..batches import Batch

    session_ids = list(range(len(sessions))) if session_ids is None else list(session_ids)
    targets, position = stack_sessions(sessions)
    n_units = [as_counts(s, f"sessions[{i}]").shape[2] for i, s in enumerate(sessions)]
    n_in = [n_inputs[i] if n_inputs is not None else n for n, i in zip(n_units, session_ids)]
    inputs, _ = stack_sessions([as_counts(s, "sessions")[:, :, :k] for s, k in zip(sessions, n_in)])
    width = width or targets.shape[2]
    targets = torch.nn.functional.pad(targets, (0, width - targets.shape[2]))
    columns = torch.arange(width, device=targets.device)[None, :]
    exists = columns < torch.as_tensor(n_units, device=targets.device)[position][:, None]
    is_input = columns < torch.as_tensor(n_in, device=targets.device)[position][:, None]
    areas = None
    if unit_areas is not None:
        if len(unit_areas) != len(sessions):
            raise ValueError(f"unit_areas: expected one array per session ({len(sessions)}), got {len(unit_areas)}")
        rows = []
        for i, (a, n) in enumerate(zip(unit_areas, n_units)):
            a = torch.as_tensor(a, dtype=torch.long).flatten()
            if a.numel() != n:
                raise ValueError(f"unit_areas[{i}] has {a.numel()} entries but session {i} has {n} units")
            rows.append(torch.nn.functional.pad(a, (0, width - n), value=-1))
        areas = torch.stack(rows).to(targets.device)[position]
    return Batch(inputs, targets=targets, session=torch.as_tensor(session_ids, device=targets.device)[position],
                 unit_areas=areas, unit_exists=exists, unit_is_input=is_input)
