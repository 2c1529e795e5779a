"""Masking: what the model is shown and what it must predict. The course's one masking interface.

NDT1 hides whole tokens. With one token per time bin, a token is all neurons at one time bin, so
masking a token means zeroing that bin for every neuron; the model must predict it from context.
That is the *temporal* scheme. Notebook 4 adds the multi-task-masking (MtM) schemes: hidden bins
predicted from the past only (causal), random neurons, part of one brain area (intra-region) or a
whole area (inter-region). Every scheme is a callable ``scheme(batch, generator) -> Masked``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch


def mask_time_bins(
    spikes: torch.Tensor, mask_ratio: float = 0.2, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero a random ``mask_ratio`` of the time bins of every trial.

    Args:
        spikes: (trials, time bins, neurons) counts.
        mask_ratio: fraction of time bins hidden per trial (rounded, at least one bin).
        generator: for reproducible masks.

    Returns:
        masked_spikes: same shape, with the chosen bins set to 0 for all neurons.
        mask: (trials, time bins) bool, True where a bin was hidden.
    """
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be strictly between 0 and 1, got {mask_ratio}")
    n_trials, n_bins, _ = spikes.shape
    n_masked = max(1, round(mask_ratio * n_bins))
    # Rank uniform noise per trial: the n_masked smallest scores are masked (exactly n per trial).
    scores = torch.rand(n_trials, n_bins, generator=generator).to(spikes.device)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    mask = ranks < n_masked
    masked_spikes = spikes.masked_fill(mask.unsqueeze(-1), 0.0)
    return masked_spikes, mask


def drop_input_units(
    spikes: torch.Tensor, drop_ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero a random ``drop_ratio`` of each trial's units for *all* its bins; scale the rest up by
    1 / (1 - drop_ratio) so the summed input keeps its size.

    A regulariser for small datasets: the model cannot lean on any one unit, so it must infer the
    population state from whichever units it is shown (the targets stay complete).

    Args:
        spikes: (trials, time bins, units) inputs.
        drop_ratio: fraction of units dropped per trial, in [0, 1); 0 returns ``spikes`` unchanged.
    Returns:
        (trials, time bins, units) inputs with the dropped units zeroed.
    """
    if not 0.0 <= drop_ratio < 1.0:
        raise ValueError(f"drop_ratio must be in [0, 1), got {drop_ratio}")
    if drop_ratio == 0.0:
        return spikes
    n_trials, _, n_units = spikes.shape
    keep = torch.rand(n_trials, 1, n_units, generator=generator).to(spikes.device) >= drop_ratio
    return spikes * keep.to(spikes.dtype) / (1.0 - drop_ratio)


# ---------------------------------------------------------------- masking schemes
# One interface for every notebook: a scheme looks at a Batch and says what the model may see
# (``inputs``) and which target entries the loss scores (``scored``). Notebook 1/2's time-bin
# masking is the "temporal" scheme; Notebook 4's multi-task masking (MtM) adds four more, each
# applied to the input data (not to tokens), so any architecture can use them.

@dataclass
class Masked:
    """What a masking scheme made of a batch.

    inputs:  (B, T, N_in) what the model sees (hidden entries zeroed).
    scored:  (B, T, N_out) bool, which target entries the loss scores.
    scheme:  the scheme's id (its index in SCHEME_NAMES), which is also its prompt-token index.
    causal:  True when the model must attend causally (the causal scheme).
    hidden_bins: (B, T) bool for schemes that hide whole bins of every unit (temporal), else None;
        Notebook 1's loss takes this per-bin mask.
    """

    inputs: torch.Tensor
    scored: torch.Tensor
    scheme: int
    causal: bool = False
    hidden_bins: torch.Tensor | None = None


def unit_roles(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(exists, is_input), both (B, N_out) bool: which target units exist in each trial's session
    (padding does not) and which of them are also inputs (column j of the inputs is target unit j).

    From ``batch.unit_exists`` / ``batch.unit_is_input`` when set; otherwise every target unit
    exists and the first N_in of them are the inputs (NLB's held-in units come first)."""
    targets = batch.target_counts
    n_trials, _, n_out = targets.shape
    device = targets.device
    exists = batch.unit_exists if batch.unit_exists is not None else \
        torch.ones(n_trials, n_out, dtype=torch.bool, device=device)
    if batch.unit_is_input is not None:
        is_input = batch.unit_is_input
    else:
        is_input = (torch.arange(n_out, device=device) < batch.spikes.shape[2])[None, :].expand(n_trials, n_out)
    for name, value in (("unit_exists", exists), ("unit_is_input", is_input)):
        if tuple(value.shape) != (n_trials, n_out):
            raise ValueError(f"Batch.{name} must be (trials, target units) = {(n_trials, n_out)}, got {tuple(value.shape)}")
    return exists.bool(), is_input.bool() & exists.bool()


def hide_units(spikes: torch.Tensor, hidden_units: torch.Tensor) -> torch.Tensor:
    """Zero, for all bins, the input columns of the target units flagged in ``hidden_units`` (B, N_out)."""
    hidden_inputs = hidden_units[:, : spikes.shape[2]]  # input column j is target unit j
    return spikes.masked_fill(hidden_inputs[:, None, :], 0.0)


def _uniform(shape, generator, device) -> torch.Tensor:
    # Draw on the CPU (where the generator lives), then move: masks are reproducible on any device.
    return torch.rand(*shape, generator=generator).to(device)


def _random_subset(eligible: torch.Tensor, ratio: float, generator, leave_one: bool = False) -> torch.Tensor:
    """(B, N) bool: each eligible unit with probability ``ratio``, and always at least one per trial
    that has any (the eligible unit with the smallest random key). ``leave_one``: never all of
    them where a trial has two or more (the one with the largest key stays), so something is left
    to predict from."""
    keys = _uniform(eligible.shape, generator, eligible.device)
    low = keys.masked_fill(~eligible, 2.0)
    chosen = eligible & ((keys < ratio) | (low == low.amin(dim=1, keepdim=True)))
    if leave_one:
        high = keys.masked_fill(~eligible, -1.0)
        last = (high == high.amax(dim=1, keepdim=True)) & (eligible.sum(1, keepdim=True) >= 2)
        chosen = chosen & ~last
    return chosen


def _areas(batch, scheme: str) -> torch.Tensor:
    if batch.unit_areas is None:
        raise ValueError(f"the {scheme} masking scheme needs the brain area of every unit: pass "
                         "Batch(..., unit_areas=(trials, target units) long, -1 for padding / no area); "
                         "fit_ndt1_stitch takes them as unit_areas=[one array per session]")
    areas = batch.unit_areas.long()
    if tuple(areas.shape) != tuple(batch.target_counts.shape[::2]):
        raise ValueError(f"Batch.unit_areas must be (trials, target units) = {tuple(batch.target_counts.shape[::2])}, "
                         f"got {tuple(areas.shape)}")
    return areas


def _random_region(areas: torch.Tensor, exists: torch.Tensor, generator) -> torch.Tensor:
    """(B, N) bool: the units of one brain area per trial, drawn uniformly among the trial's areas.

    Each area code gets a random key (area codes index a (B, N) table of keys, so codes must lie
    in 0..N-1); the area of the existing unit with the largest key wins. No data-dependent shapes,
    so it runs on any device."""
    n_units = areas.shape[1]
    if areas.device.type != "meta" and bool((areas >= n_units).any()):
        raise ValueError(f"unit_areas codes must be 0..{n_units - 1} (one code per area, -1 for none); got "
                         f"{int(areas.max())}")
    has_area = exists & (areas >= 0)
    keys = _uniform(areas.shape, generator, areas.device).gather(1, areas.clamp(min=0))
    keys = keys.masked_fill(~has_area, -1.0)
    chosen_area = areas.gather(1, keys.argmax(dim=1, keepdim=True))  # (B, 1)
    return has_area & (areas == chosen_area)


def intra_region_view(spikes: torch.Tensor, in_region: torch.Tensor, targets: torch.Tensor):
    """What intra-region masking shows and scores, for given units (Notebook 4A's exercise).

    Args:
        spikes: (B, T, N_in) inputs; in_region: (B, N_out) bool, the chosen area's units;
        targets: (B, N_out) bool, the units to predict (inside the area).
    Returns:
        inputs: (B, T, N_in), only the area's units that are not targets (everything else zeroed);
        scored: (B, T, N_out) bool, the targets at every bin.
    """
    visible = in_region & ~targets
    return hide_units(spikes, ~visible), targets[:, None, :].expand(-1, spikes.shape[1], -1)


class MaskingScheme:
    """A way of hiding part of a batch: ``scheme(batch, generator) -> Masked``. Subclasses set ``name``."""

    name = "scheme"

    @property
    def id(self) -> int:
        return SCHEME_NAMES.index(self.name)

    def __call__(self, batch, generator: torch.Generator | None = None) -> Masked:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class TemporalMasking(MaskingScheme):
    """Notebooks 1-2: hide ``mask_ratio`` of the time bins (all units) and predict them.

    Inputs are scored on the hidden bins; target units that are never inputs (NLB's held-out units)
    are hidden everywhere, so they are scored on every bin; padding is never scored. ``mask_fn`` is
    swappable (Notebook 1's exercise): ``mask_fn(spikes, mask_ratio, generator) -> (masked, (B, T) mask)``.
    ``tail_bins`` > 0 hides the last bins of every trial as well (for a forecasting head).
    """

    name = "temporal"

    def __init__(self, mask_ratio: float = 0.2, mask_fn=mask_time_bins, tail_bins: int = 0):
        if tail_bins < 0:
            raise ValueError(f"tail_bins must be >= 0, got {tail_bins}")
        self.mask_ratio, self.mask_fn, self.tail_bins = mask_ratio, mask_fn, tail_bins

    def __call__(self, batch, generator=None) -> Masked:
        exists, is_input = unit_roles(batch)
        inputs, hidden_bins = self.mask_fn(batch.spikes, self.mask_ratio, generator)
        if self.tail_bins:  # also the last tail_bins of every trial (NeuroFMX's forecast head predicts them)
            n_bins = batch.spikes.shape[1]
            if self.tail_bins >= n_bins:
                raise ValueError(f"tail_bins={self.tail_bins} leaves no visible bins in trials of {n_bins} bins")
            tail = torch.arange(n_bins, device=hidden_bins.device) >= n_bins - self.tail_bins  # (T,)
            hidden_bins = hidden_bins | tail
            inputs = inputs.masked_fill(tail[None, :, None], 0.0)
        scored = exists[:, None, :] & (~is_input[:, None, :] | hidden_bins[:, :, None])
        return Masked(inputs, scored, self.id, False, hidden_bins)


class CausalMasking(TemporalMasking):
    """Predict each hidden bin from the past only: hide a random ``mask_ratio`` of the time bins
    (all units, as the temporal scheme does) and attend causally, so a bin's output sees the
    visible bins before it and nothing after it. The past of a hidden bin is visible up to the
    bin before (or the last visible one), so this is mostly next-step prediction, with some
    longer gaps; it mirrors the paper's code, where the causal scheme is temporal masking under
    a causal attention mask.

    Why not hide everything from one cut on? Then the scored bins are forecasts up to a whole
    trial ahead, mostly unpredictable with chaotic dynamics, and a batch holds one forecast per
    trial: measured on the multi-region stand-in (full profile, prompted MtM), forward
    prediction 0.31 bits/spike with the cut vs 0.44 with hidden bins under a causal mask.
    Inputs are scored on the hidden bins; never-input units (NLB's held-out ones) on every bin."""

    name = "causal"

    def __init__(self, mask_ratio: float = 0.3, mask_fn=mask_time_bins):
        super().__init__(mask_ratio, mask_fn)

    def __call__(self, batch, generator=None) -> Masked:
        return replace(super().__call__(batch, generator), causal=True)  # the temporal scheme's masks


class NeuronMasking(MaskingScheme):
    """Hide a random ``mask_ratio`` of the input units for all bins; predict them from the others
    (never-input units are hidden too, and scored)."""

    name = "neuron"

    def __init__(self, mask_ratio: float = 0.3):
        self.mask_ratio = mask_ratio

    def __call__(self, batch, generator=None) -> Masked:
        exists, is_input = unit_roles(batch)
        hidden = _random_subset(is_input, self.mask_ratio, generator) | (exists & ~is_input)
        return Masked(hide_units(batch.spikes, hidden), hidden[:, None, :].expand(-1, batch.spikes.shape[1], -1),
                      self.id)


class IntraRegionMasking(MaskingScheme):
    """Pick one brain area per trial; hide a random ``mask_ratio`` of its units (at least one, and
    never all where it has two or more) and predict them from the rest of the *same* area only:
    every other area is hidden too (and not scored)."""

    name = "intra_region"

    def __init__(self, mask_ratio: float = 0.3):
        self.mask_ratio = mask_ratio

    def __call__(self, batch, generator=None) -> Masked:
        exists, is_input = unit_roles(batch)
        region = _random_region(_areas(batch, "intra-region"), exists, generator)
        targets = _random_subset(region & is_input, self.mask_ratio, generator, leave_one=True) | (region & ~is_input)
        inputs, scored = intra_region_view(batch.spikes, region & is_input, targets)
        return Masked(inputs, scored, self.id)


class InterRegionMasking(MaskingScheme):
    """Pick one brain area per trial; hide all its units and predict them from the *other* areas."""

    name = "inter_region"

    def __call__(self, batch, generator=None) -> Masked:
        exists, _ = unit_roles(batch)
        region = _random_region(_areas(batch, "inter-region"), exists, generator)
        return Masked(hide_units(batch.spikes, region), region[:, None, :].expand(-1, batch.spikes.shape[1], -1),
                      self.id)


SCHEME_NAMES = ("temporal", "causal", "neuron", "intra_region", "inter_region")  # id = index = prompt token
MTM_SCHEMES = ("causal", "neuron", "intra_region", "inter_region")  # the paper's four
_SCHEME_CLASSES = {cls.name: cls for cls in (TemporalMasking, CausalMasking, NeuronMasking, IntraRegionMasking,
                                             InterRegionMasking)}


def make_schemes(masking) -> list[MaskingScheme]:
    """``"temporal"``, ``"mtm"`` (the four MtM schemes), a scheme name, or a list of names/schemes ->
    a list of scheme objects (default settings)."""
    if isinstance(masking, MaskingScheme):
        return [masking]
    if isinstance(masking, str):
        masking = list(MTM_SCHEMES) if masking == "mtm" else [masking]
    if not isinstance(masking, (list, tuple)) or not masking:
        raise ValueError(f"masking: expected 'temporal', 'mtm' or a non-empty list of scheme names from "
                         f"{list(SCHEME_NAMES)}; got {masking!r}")
    schemes = []
    for item in masking:
        if isinstance(item, MaskingScheme):
            schemes.append(item)
        elif item in _SCHEME_CLASSES:
            schemes.append(_SCHEME_CLASSES[item]())
        else:
            raise ValueError(f"unknown masking scheme {item!r}: expected one of {list(SCHEME_NAMES)} (or 'mtm')")
    return schemes
