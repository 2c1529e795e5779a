"""The course's one training loop, used by every notebook.

It moves data and model to the device (whole datasets fit in GPU memory here, so batches are
sliced on the device with no DataLoader), uses mixed precision on CUDA (runtime.autocast_dtype),
shows a progress bar, validates every epoch, stops early when validation stops improving,
restores the best weights, and returns the loss history.

What is optimised is a separate *objective*: a callable ``objective(model, batch, generator)``
returning a scalar loss (see objectives.py), so the same loop trains masked autoencoders,
stitched models and decoders.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .runtime import autocast, autocast_dtype as resolve_autocast_dtype, get_device, seed_everything


@dataclass
class History:
    """Per-epoch losses of one training run."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    steps: int = 0
    seconds: float = 0.0

    @property
    def best_val_loss(self) -> float:
        return self.val_loss[self.best_epoch] if self.val_loss else float("nan")


def iterate_batches(tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator | None):
    """Yield tuples of aligned batches; shuffled when a generator is given, in order otherwise."""
    n = tensors[0].shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(tensors[0].device)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield tuple(t[index] for t in tensors)


def evaluate_objective(model, objective, tensors, batch_size: int, seed: int = 12345) -> float:
    """Mean objective over a dataset in eval mode, with a fixed mask seed so epochs are comparable."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in iterate_batches(tensors, batch_size, None):
            size = batch[0].shape[0]
            total += float(objective(model, batch, generator)) * size
            count += size
    return total / count


def train(
    model: torch.nn.Module,
    train_data: tuple[torch.Tensor, ...],
    val_data: tuple[torch.Tensor, ...] | None,
    objective,
    *,
    epochs: int = 100,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 0.01,
    patience: int | None = 20,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "training",
    autocast_dtype: torch.dtype | str | None = None,
) -> History:
    """Train ``model`` in place with AdamW + cosine decay; return its :class:`History`.

    Args:
        train_data, val_data: tuples of tensors with trials on dim 0, e.g. ``(spikes,)`` or
            ``(spikes, velocity)``; ``val_data=None`` skips validation and early stopping.
        objective: ``objective(model, batch, generator) -> loss`` (see objectives.py).
        patience: stop after this many epochs without a better validation loss (None: never).
        seed: seeds weights' dropout, shuffling and masks, so a CPU run is exactly reproducible.
        autocast_dtype: reduced precision for the forward pass: a dtype, "off", or None for
            automatic (bfloat16 or float16 on CUDA, off on CPU, unless $TUTORIAL_AUTOCAST says otherwise).
    """
    device = torch.device(device) if device is not None else get_device()
    generator = seed_everything(seed)
    model.to(device)
    train_data = tuple(torch.as_tensor(t).to(device) for t in train_data)
    val_data = tuple(torch.as_tensor(t).to(device) for t in val_data) if val_data is not None else None

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    amp_dtype = resolve_autocast_dtype(device, autocast_dtype)
    # float16 gradients can underflow, so float16 on CUDA (e.g. the T4) needs loss scaling; bfloat16 does not
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and device.type == "cuda")

    history, best_state, start = History(), None, time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=True)
    for epoch in bar:
        model.train()
        epoch_loss, epoch_count = 0.0, 0
        for batch in iterate_batches(train_data, batch_size, generator):
            with autocast(device, amp_dtype):
                loss = objective(model, batch, generator)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            epoch_loss += float(loss.detach()) * batch[0].shape[0]
            epoch_count += batch[0].shape[0]
            history.steps += 1
        scheduler.step()
        history.train_loss.append(epoch_loss / epoch_count)

        if val_data is None:
            bar.set_postfix(train=f"{history.train_loss[-1]:.4f}")
            continue
        with autocast(device, amp_dtype):
            history.val_loss.append(evaluate_objective(model, objective, val_data, batch_size))
        if history.best_epoch < 0 or history.val_loss[-1] < history.best_val_loss:
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
    outputs = []
    with torch.no_grad(), autocast(device, resolve_autocast_dtype(device, autocast_dtype)):
        for batch in iterate_batches((torch.as_tensor(spikes), *extra), batch_size, None):
            outputs.append(getattr(model, method)(*(t.to(device) for t in batch), **kwargs).float().cpu())
    return torch.cat(outputs)


def predict_hidden_bins(model, spikes: torch.Tensor, *extra: torch.Tensor, n_folds: int = 5,
                        method: str = "forward", batch_size: int = 256,
                        autocast_dtype: torch.dtype | str | None = None) -> torch.Tensor:
    """``model.<method>`` output for every bin computed *while that bin was masked*, in ``n_folds`` passes.

    A masked autoencoder is only ever trained to predict bins it cannot see; shown a bin, it tends
    to echo that bin's noisy counts. So we infer bin t from a pass in which bin t is zeroed: fold k
    hides the bins t with t % n_folds == k (20% of bins for 5 folds, like training). Scoring these
    predictions against ``spikes`` is also honest: the model never saw the counts it is scored on.
    """
    spikes = torch.as_tensor(spikes)
    bins = torch.arange(spikes.shape[1])  # on the CPU, like predict's outputs
    output = None
    for fold in range(n_folds):
        hidden = bins % n_folds == fold  # (T,)
        hidden_bins = hidden.to(spikes.device)[None, :, None]
        fold_output = predict(model, spikes.masked_fill(hidden_bins, 0.0), *extra, method=method,
                              batch_size=batch_size, autocast_dtype=autocast_dtype)
        output = torch.zeros_like(fold_output) if output is None else output
        output[:, hidden] = fold_output[:, hidden]
    return output
