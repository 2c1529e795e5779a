"""Named batches: what one training step sees, by name rather than by position.

Notebook 1 needs only spike counts; Notebook 2 adds the session of each trial and separate
targets (held-out units); Notebook 3 adds behaviour; Notebook 4 adds which units exist, which
are inputs and their brain areas (what the masking schemes of masking.py need). A
:class:`Batch` carries all of them, so objectives ask for ``batch.behaviour`` instead of
remembering that it was the third element of a tuple, and a new field never breaks old code.

Every tensor field has trials on dim 0, so slicing a Batch slices all of them together.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Batch:
    """Aligned per-trial tensors; only ``spikes`` is required.

    spikes:     (B, T, N_in) input spike counts (float32).
    targets:    (B, T, N_out) counts the model must predict; None means the inputs themselves.
    session:    (B,) long, index of each trial's recording session (stitched models).
    unit_areas: (B, N_out) long, brain-area code of every unit of the trial's session (-1: padding).
    unit_exists: (B, N_out) bool, the target units the trial's session has (False: padding);
                None means all of them.
    unit_is_input: (B, N_out) bool, the target units that are also inputs (input column j is target
                unit j); None means the first N_in.
    behaviour:  (B, T, d) float, e.g. hand velocity, on the same bins as the spikes.
    prompt:     (B,) long, a prompt/context id per trial (used from Notebook 4 on).
    """

    spikes: torch.Tensor
    targets: torch.Tensor | None = None
    session: torch.Tensor | None = None
    unit_areas: torch.Tensor | None = None
    unit_exists: torch.Tensor | None = None
    unit_is_input: torch.Tensor | None = None
    behaviour: torch.Tensor | None = None
    prompt: torch.Tensor | None = None

    def __post_init__(self):
        self.spikes = torch.as_tensor(self.spikes)
        for name, value in self.tensors().items():
            value = torch.as_tensor(value)
            if value.shape[0] != self.spikes.shape[0]:
                raise ValueError(f"Batch.{name} has {value.shape[0]} trials but spikes has "
                                 f"{self.spikes.shape[0]}; every field needs one entry per trial (dim 0)")
            setattr(self, name, value)

    def __len__(self) -> int:
        return self.spikes.shape[0]

    def __getitem__(self, index) -> "Batch":
        """The trials ``index`` (an int tensor, slice or bool mask) of every field."""
        return replace(self, **{name: value[index] for name, value in self.tensors().items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        """The fields that are set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def to(self, device) -> "Batch":
        return replace(self, **{name: value.to(device) for name, value in self.tensors().items()})

    @property
    def target_counts(self) -> torch.Tensor:
        """What the model should predict: ``targets`` if set, else the input ``spikes``."""
        return self.targets if self.targets is not None else self.spikes


def as_batch(data) -> Batch:
    """A :class:`Batch` as is, or a bare (trials, T, N) spike tensor/array wrapped as one."""
    if isinstance(data, Batch):
        return data
    if isinstance(data, (tuple, list)):
        raise TypeError("batches are named now: pass Batch(spikes, session=..., behaviour=...) "
                        "(from tutorial_utils.batches) instead of a tuple of tensors")
    return Batch(torch.as_tensor(data))
