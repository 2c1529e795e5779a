"""The course's one training loop, used by every notebook.

It moves data and model to the device (whole datasets fit in GPU memory here, so batches are
sliced on the device with no DataLoader), uses mixed precision on CUDA (runtime.autocast_dtype),
shows a progress bar, validates every epoch, stops early when validation stops improving,
restores the best weights, and returns the loss history.

What is optimised is a separate *objective*: a callable ``objective(model, batch, generator)``
taking a named :class:`~tutorial_utils.batches.Batch` and returning a scalar loss, or a dict of
named losses whose ``"total"`` is optimised (e.g. Poisson + velocity; see objectives.py). The same
loop trains masked autoencoders, stitched models and decoders, and records every named loss.
"""
from __future__ import annotations

import copy
import numbers
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .batches import Batch, as_batch
from .runtime import autocast, autocast_dtype as resolve_autocast_dtype, get_device, seed_everything


@dataclass
class History:
    """Per-epoch losses of one training run.

    ``train_loss``/``val_loss`` hold the optimised total; when the objective returns several named
    losses, ``train_parts``/``val_parts`` hold each of them by name (e.g. "poisson", "velocity").
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_parts: dict[str, list[float]] = field(default_factory=dict)
    val_parts: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = -1
    steps: int = 0
    seconds: float = 0.0

    @property
    def best_val_loss(self) -> float:
        return self.val_loss[self.best_epoch] if self.val_loss else float("nan")


def named_losses(output) -> dict[str, torch.Tensor]:
    """An objective's output as a dict with a "total": a bare scalar is the total itself."""
    if isinstance(output, dict):
        if "total" not in output:
            raise ValueError(f"an objective returning several losses must include the optimised 'total'; "
                             f"got {sorted(output)}")
        return output
    return {"total": output}


def iterate_batches(data: Batch, batch_size: int, generator: torch.Generator | None):
    """Yield sub-batches of ``data``; shuffled when a generator is given, in order otherwise."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(data.spikes.device)
    for start in range(0, n, batch_size):
        yield data[order[start:start + batch_size]]


def _record(parts: dict[str, list[float]], sums: dict[str, float], count: int) -> None:
    for name, value in sums.items():
        if name != "total":
            parts.setdefault(name, []).append(value / count)


def gradient_scaler(device: torch.device, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Loss scaling where it is needed: float16 gradients can underflow, so float16 on CUDA (e.g. the
    T4) scales the loss; bfloat16 and float32 do not (the scaler is then a pass-through)."""
    return torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and torch.device(device).type == "cuda")


def backward_pass(model, objective, batch: Batch, generator: torch.Generator | None,
                  amp_dtype: torch.dtype | None, scaler: torch.amp.GradScaler,
                  loss_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The objective on ``batch`` (forward under autocast to ``amp_dtype``), then backward of
    ``loss_weight`` * its total, adding to the gradients. Returns the named losses, detached.

    ``loss_weight`` < 1 averages over several backward passes per optimizer step (gradient
    accumulation in scripts/pretrain.py); training here uses one pass per step.
    """
    with autocast(batch.spikes.device, amp_dtype):
        losses = named_losses(objective(model, batch, generator))
    scaler.scale(losses["total"] * loss_weight).backward()
    return {name: value.detach() for name, value in losses.items()}


def optimizer_step(model, optimizer, scaler: torch.amp.GradScaler, max_grad_norm: float = 1.0) -> None:
    """Clip the gradients to ``max_grad_norm`` (unscaled first), step, and clear them for the next step."""
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def evaluate_objective(model, objective, data: Batch, batch_size: int, seed: int = 12345) -> dict[str, float]:
    """Mean of each named loss over a dataset in eval mode, with a fixed mask seed so epochs are
    comparable; the optimised one is ``["total"]``."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    sums, count = {}, 0
    with torch.no_grad():
        for batch in iterate_batches(as_batch(data), batch_size, None):
            for name, value in named_losses(objective(model, batch, generator)).items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(batch)
            count += len(batch)
    return {name: total / count for name, total in sums.items()}


def train(
    model: torch.nn.Module,
    train_data: Batch,
    val_data: Batch | None,
    objective,
    *,
    epochs: int = 100,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 0.01,
    patience: int | None = 20,
    select_on: str = "total",
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "training",
    autocast_dtype: torch.dtype | str | None = None,
) -> History:
    """Train ``model`` in place with AdamW + cosine decay; return its :class:`History`.

    Args:
        train_data, val_data: :class:`Batch` objects (a bare spike tensor is wrapped as ``Batch(spikes)``);
            ``val_data=None`` skips validation and early stopping.
        objective: ``objective(model, batch, generator) -> loss or {"total": loss, name: loss, ...}``.
        patience: stop after this many epochs without a better validation loss (None: never).
        select_on: which named validation loss decides early stopping and the weights kept: "total"
            (the optimised one) or one part of it, e.g. the loss the model is scored on when the
            other parts only help train it (NeuroFMX's auxiliary heads).
        seed: seeds weights' dropout, shuffling and masks, so a CPU run is exactly reproducible.
        autocast_dtype: reduced precision for the forward pass: a dtype, "off", or None for
            automatic (bfloat16 or float16 on CUDA, off on CPU, unless $TUTORIAL_AUTOCAST says otherwise).
    """
    device = torch.device(device) if device is not None else get_device()
    generator = seed_everything(seed)
    model.to(device)
    train_data = as_batch(train_data).to(device)
    val_data = as_batch(val_data).to(device) if val_data is not None else None

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    amp_dtype = resolve_autocast_dtype(device, autocast_dtype)
    scaler = gradient_scaler(device, amp_dtype)

    optimizer.zero_grad(set_to_none=True)  # no stale gradients from earlier use of the model
    history, best_state, start = History(), None, time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=True)
    for epoch in bar:
        model.train()
        sums, epoch_count = {}, 0
        for batch in iterate_batches(train_data, batch_size, generator):
            losses = backward_pass(model, objective, batch, generator, amp_dtype, scaler)
            optimizer_step(model, optimizer, scaler)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(batch)
            epoch_count += len(batch)
            history.steps += 1
        scheduler.step()
        history.train_loss.append(sums["total"] / epoch_count)
        _record(history.train_parts, sums, epoch_count)

        if val_data is None:
            bar.set_postfix(train=f"{history.train_loss[-1]:.4f}")
            continue
        with autocast(device, amp_dtype):
            val = evaluate_objective(model, objective, val_data, batch_size)
        if select_on not in val:
            raise ValueError(f"select_on={select_on!r} is not a loss the objective returns ({sorted(val)})")
        history.val_loss.append(val["total"])
        _record(history.val_parts, val, 1)
        selected = history.val_loss if select_on == "total" else history.val_parts[select_on]
        if history.best_epoch < 0 or selected[-1] < selected[history.best_epoch]:
            history.best_epoch = epoch
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(train=f"{history.train_loss[-1]:.4f}", val=f"{history.val_loss[-1]:.4f}",
                        best=history.best_epoch)
        if patience is not None and epoch - history.best_epoch >= patience:
            break
    bar.close()

    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def predict(model, spikes: torch.Tensor, *extra: torch.Tensor, method: str = "forward", batch_size: int = 256,
            autocast_dtype: torch.dtype | str | None = None, **kwargs) -> torch.Tensor:
    """Run ``model.<method>(spikes, *extra)`` in eval mode, batched over trials; returns a float32 CPU tensor.

    ``extra`` are further per-trial inputs, e.g. the session ids of a stitched model. Runs in the
    precision training uses by default (runtime.autocast_dtype; ``autocast_dtype`` as in train).
    """
    model.eval()
    device = next(model.parameters()).device
    inputs = (torch.as_tensor(spikes), *(torch.as_tensor(t) for t in extra))
    outputs = []
    with torch.no_grad(), autocast(device, resolve_autocast_dtype(device, autocast_dtype)):
        for start in range(0, len(inputs[0]), batch_size):
            chunk = (t[start:start + batch_size].to(device) for t in inputs)
            outputs.append(getattr(model, method)(*chunk, **kwargs).float().cpu())
    return torch.cat(outputs)


def predict_hidden_bins(model, spikes: torch.Tensor, *extra: torch.Tensor, n_folds: int = 5, n_draws: int = 1,
                        method: str = "forward", batch_size: int = 256,
                        autocast_dtype: torch.dtype | str | None = None) -> torch.Tensor:
    """``model.<method>`` output for every bin computed *while that bin was masked*, in ``n_folds`` passes.

    A masked autoencoder is only ever trained to predict bins it cannot see; shown a bin, it tends
    to echo that bin's noisy counts. So we infer bin t from a pass in which bin t is zeroed: fold k
    hides the bins t with t % n_folds == k (20% of bins for 5 folds, like training). Scoring these
    predictions against ``spikes`` is also honest: the model never saw the counts it is scored on.

    ``n_draws`` > 1 averages the outputs (log-rates, say) over that many partitions of the bins into
    folds: the first is the one above; each further one shuffles the fold labels within every block
    of ``n_folds`` consecutive bins (with a fixed seed, so every call gives the same answer), so each
    fold still hides one bin in every block, spread out like the strided folds (fully random folds,
    which can hide runs of neighbouring bins, predicted worse one at a time). Each bin is then
    inferred from several different contexts, which averages out part of the noise of any one; it
    costs n_draws times the passes. (On the LFADS-like Lorenz benchmark, full profile, 16 draws
    raised fit_ndt1's rate R^2 from 0.881 / 0.890 to 0.891 / 0.899 for seeds 0 / 1.)
    """
    if isinstance(n_draws, bool) or not isinstance(n_draws, numbers.Integral) or n_draws < 1:
        raise ValueError(f"n_draws must be a whole number >= 1 (1: one partition of the bins into folds), got {n_draws!r}")
    spikes = torch.as_tensor(spikes)
    n_bins = spikes.shape[1]
    shuffles = torch.Generator().manual_seed(0)
    total = None
    n_blocks = -(-n_bins // n_folds)
    for draw in range(int(n_draws)):
        if draw == 0:
            fold_of_bin = torch.arange(n_bins) % n_folds  # (T,), on the CPU like predict's outputs
        else:  # a random order of the fold labels in each block of n_folds bins
            fold_of_bin = torch.cat([torch.randperm(n_folds, generator=shuffles) for _ in range(n_blocks)])[:n_bins]
        output = None
        for fold in range(n_folds):
            hidden = fold_of_bin == fold  # (T,)
            hidden_bins = hidden.to(spikes.device)[None, :, None]
            fold_output = predict(model, spikes.masked_fill(hidden_bins, 0.0), *extra, method=method,
                                  batch_size=batch_size, autocast_dtype=autocast_dtype)
            output = torch.zeros_like(fold_output) if output is None else output
            output[:, hidden] = fold_output[:, hidden]
        total = output if total is None else total + output
    return total / n_draws if n_draws > 1 else total
