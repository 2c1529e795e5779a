"""Plumbing of scripts/pretrain.py: its options, its data, its checkpoints and its throughput log.

The script itself reads as the training recipe; what is here is the bookkeeping around it.

Reproducibility across numbers of processes. A step's global batch of G windows is cut into
``world_size * grad_accum`` micro-batches ("slots"). Each micro-batch draws its masks and dropout
from its own seed, made from (seed, step, slot), and slot s always holds the same windows (see
:func:`micro_batches`). So two ranks with one micro-batch each compute exactly what one process
with two accumulated micro-batches computes: same windows, same masks, same averaged gradient.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .batches import Batch

if TYPE_CHECKING:
    from .data import WindowDataset
    from .models import NDT1Stitch

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
# Options that must match for --resume to continue the same run (the others may change, e.g. --max-steps).
MUST_MATCH_ON_RESUME = ("data_dir", "sessions", "bin_ms", "max_trials", "global_batch_size", "d_model", "n_layers",
                        "n_heads", "dropout", "input_dropout", "mask_ratio", "lr", "weight_decay", "warmup_steps",
                        "seed")


# ---------------------------------------------------------------- options

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Pretrain NDT1-stitch on many sessions with DistributedDataParallel "
                    "(run it with torchrun for several processes, or plainly for one).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", type=Path, help="JSON or YAML file of option values (keys as the flags, "
                        "with _ for -); flags given on the command line win")
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", type=Path, help="a folder of NWB files in the NLB layout (searched recursively), "
                      "one session each; without it, --sessions from the course's data cache")
    data.add_argument("--sessions", nargs="+", default=["mc_maze_small", "mc_maze_medium"],
                      help="MC_Maze sessions (used without --data-dir)")
    data.add_argument("--synthetic", action="store_true", default=None,
                      help="--sessions: the simulated stand-in; unset (%(default)s): $TUTORIAL_SYNTHETIC_DATA says")
    data.add_argument("--bin-ms", type=int, default=5, help="bin width in ms")
    data.add_argument("--max-trials", type=int, help="use at most this many training trials per session")
    data.add_argument("--max-open-files", type=int, default=8, help="NWB files kept in memory per rank (and worker)")
    data.add_argument("--num-workers", type=int, default=0,
                      help="DataLoader worker processes per rank reading windows ahead (0: read in the training loop)")
    model = parser.add_argument_group("model and objective")
    model.add_argument("--d-model", type=int, default=64, help="width of the shared latent space")
    model.add_argument("--n-layers", type=int, default=2, help="transformer layers")
    model.add_argument("--n-heads", type=int, default=4, help="attention heads")
    model.add_argument("--dropout", type=float, default=0.1, help="dropout inside the transformer")
    model.add_argument("--input-dropout", type=float, default=0.3,
                       help="fraction of input units hidden per window while training")
    model.add_argument("--mask-ratio", type=float, default=0.2, help="fraction of time bins masked")
    training = parser.add_argument_group("training")
    training.add_argument("--global-batch-size", type=int, default=64,
                          help="windows per optimizer step, summed over all ranks and accumulation steps")
    training.add_argument("--grad-accum", type=int, default=1,
                          help="micro-batches accumulated per rank before each optimizer step")
    training.add_argument("--max-steps", type=int, default=1000, help="optimizer steps in all")
    training.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW)")
    training.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    training.add_argument("--warmup-steps", type=int, default=50,
                          help="linear warm-up steps, then cosine decay to 0 at --max-steps")
    training.add_argument("--autocast", choices=["off", "bfloat16", "float16"],
                          help="mixed precision; unset (%(default)s): bfloat16 or float16 on GPUs, off on CPU "
                          "(runtime.autocast_dtype)")
    training.add_argument("--device", choices=["cuda", "cpu"], help="unset (%(default)s): cuda when available")
    training.add_argument("--seed", type=int, default=0, help="weights, shuffling, masks and dropout")
    run = parser.add_argument_group("checkpoints and logs")
    run.add_argument("--out-dir", type=Path, default=Path("runs/pretrain"), help="checkpoint and logs go here")
    run.add_argument("--save-every", type=int, default=100, help="checkpoint every this many steps (and at the end)")
    run.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint.pt if it exists")
    run.add_argument("--log-every", type=int, default=10, help="a log line every this many steps")
    run.add_argument("--log-window-ids", action="store_true",
                     help="write the window ids each rank trains on to OUT_DIR/windows_rank<R>.jsonl")
    run.add_argument("--crash-at-step", type=int, help=argparse.SUPPRESS)  # test hook: die after this step
    return parser


def parse_options(argv=None, world_size: int = 1) -> argparse.Namespace:
    """Flags over the optional config file over the defaults; checked against ``world_size``.

    Bad input stops with argparse's usage message and a sentence saying what was expected.
    """
    parser = build_parser()
    args, _ = parser.parse_known_args(argv)
    if args.config is not None:
        parser.set_defaults(**read_config(args.config, parser))
    args = parser.parse_args(argv)
    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder; give the folder that holds the sessions "
                     "(the loaders' cache root), or leave the flag out to use $TUTORIAL_DATA_DIR")
    for name in ("global_batch_size", "grad_accum", "max_steps", "save_every", "log_every", "d_model", "max_trials",
                 "max_open_files"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_workers < 0:
        parser.error(f"--num-workers must be >= 0, got {args.num_workers}")
    micro_batches = world_size * args.grad_accum
    if args.global_batch_size % micro_batches:
        parser.error(f"--global-batch-size {args.global_batch_size} is not divisible by world size ({world_size}) x "
                     f"--grad-accum ({args.grad_accum}) = {micro_batches}; pick a multiple of {micro_batches}")
    return args


def read_config(path: Path, parser: argparse.ArgumentParser) -> dict:
    """Option values from a .json or .yaml/.yml file, checked against the parser's options."""
    if not path.is_file():
        parser.error(f"--config {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text) or {}
    elif path.suffix == ".json":
        values = json.loads(text)
    else:
        parser.error(f"--config {path}: expected a .json, .yaml or .yml file")
    if not isinstance(values, dict):
        parser.error(f"--config {path}: expected a mapping of option names to values")
    values = {key.replace("-", "_"): value for key, value in values.items()}
    known = {action.dest for action in parser._actions} - {"help", "config"}
    unknown = sorted(set(values) - known)
    if unknown:
        parser.error(f"--config {path}: unknown options {unknown}; known: {sorted(known)}")
    for key in ("data_dir", "out_dir"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    return values


# ---------------------------------------------------------------- data

@dataclass
class Windows:
    """The training windows, streamed from NWB files (:class:`~tutorial_utils.data.WindowDataset`,
    one window per training trial), and what the model needs to know about each session."""

    dataset: "WindowDataset"
    n_inputs: list[int]  # held-in units per session (in the dataset's session order)
    n_outputs: list[int]  # held-in + held-out units per session
    session_names: list[str]

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def n_bins(self) -> int:
        return self.dataset.n_bins

    def collate(self, window_ids: list[int]) -> tuple[torch.Tensor, Batch]:
        """A DataLoader's collate_fn: the ids it was given (as a tensor) and their :meth:`batch`."""
        return torch.tensor(window_ids), self.batch(window_ids)

    def batch(self, window_ids) -> Batch:
        """Windows ``window_ids`` as NDT1-stitch's batch: inputs (B, T, max N_in) the held-in units,
        targets (B, T, max N_out) all units (held-in first), session (B,); zero-padded.

        Widths are fixed by the sessions, not by the windows drawn, so that a micro-batch's random
        masks do not depend on which other windows share its batch."""
        from .data import collate_windows

        windows = collate_windows([self.dataset[int(i)] for i in window_ids])  # (B, T, widest unit count drawn)
        inputs = windows.spikes.masked_fill(windows.heldout[:, None, :], 0.0)  # a session's held-in units come first
        inputs = torch.nn.functional.pad(inputs, (0, max(self.n_inputs) - inputs.shape[2]))  # (crops if negative)
        targets = torch.nn.functional.pad(windows.spikes, (0, max(self.n_outputs) - windows.spikes.shape[2]))
        # Which target columns are real units, and which of them the model sees: the objective scores
        # held-out units on every bin, held-in ones on masked bins and padding never.
        columns = torch.arange(targets.shape[2])[None, :]
        exists = columns < torch.tensor(self.n_outputs)[windows.session][:, None]
        is_input = columns < torch.tensor(self.n_inputs)[windows.session][:, None]
        return Batch(inputs, targets=targets, session=windows.session, unit_exists=exists, unit_is_input=is_input)


def training_files(args: argparse.Namespace) -> list[Path]:
    """The NWB files to train on: every training file under ``--data-dir``, else the train files of
    the MC_Maze ``--sessions`` in the course's data cache (downloaded, or generated with
    ``--synthetic``, when missing)."""
    if args.data_dir is not None:
        files = sorted(path for path in args.data_dir.rglob("*.nwb") if "desc-test" not in path.name)
        if not files:
            raise ValueError(f"--data-dir {args.data_dir} holds no .nwb training files (NLB layout, e.g. written "
                             "by data.write_sessions_nwb); NLB test files (desc-test) are skipped")
        return files
    from .data import load_mc_maze
    from .data.maze_catalogue import dandi_paths, session_dir, use_synthetic

    files = []
    for name in args.sessions:
        path = session_dir(name, synthetic=use_synthetic(args.synthetic)) / dandi_paths(name)[0]
        if not path.exists():
            load_mc_maze(name, args.bin_ms, synthetic=args.synthetic)  # downloads or generates it
        files.append(path)
    return files


def load_windows(args: argparse.Namespace) -> Windows:
    """The data source: one window per training trial of every file, read lazily (see
    :class:`~tutorial_utils.data.WindowDataset`); ``--max-trials`` keeps each file's first ones."""
    from .data import WindowDataset

    dataset = WindowDataset(training_files(args), bin_ms=args.bin_ms, splits=("train",), seed=args.seed,
                            max_loaded=args.max_open_files)
    if args.max_trials is not None:
        keep = np.concatenate([np.flatnonzero(dataset.windows[:, 0] == f)[: args.max_trials]
                               for f in range(len(dataset.files))])
        dataset.windows = dataset.windows[np.sort(keep)]
    n_outputs = [len(info.unit_ids) for info in dataset.info]
    n_inputs = [int((~info.heldout).sum()) for info in dataset.info]
    return Windows(dataset, n_inputs, n_outputs, [info.session for info in dataset.info])


class FileGroupedSampler(torch.utils.data.DistributedSampler):
    """A DistributedSampler (rank r of W takes positions r, r + W, ... of each epoch's shuffled
    order, dropping the remainder) whose order keeps each file's windows together
    (WindowDataset.epoch_order), so each rank reads each file about once per epoch even when only
    a few files fit in memory. Call ``set_epoch`` before each epoch, as for any DistributedSampler."""

    def __iter__(self):
        order = self.dataset.epoch_order(self.epoch)[: self.total_size]
        return iter(order[self.rank:self.total_size:self.num_replicas].tolist())


def micro_batches(batch: Batch, grad_accum: int) -> list[Batch]:
    """A rank's share of one global batch cut into ``grad_accum`` micro-batches, strided.

    The sampler gives rank r the positions r, r + W, r + 2W, ... of the epoch's order; taking every
    ``grad_accum``-th of them again makes micro-batch a of rank r hold the positions
    (W * a + r) + k * W * grad_accum: a slot fixed by W * a + r alone, the same windows whatever
    the split between ranks and accumulation.
    """
    return [batch[a::grad_accum] for a in range(grad_accum)]


def micro_batch_seed(seed: int, step: int, slot: int) -> int:
    """The seed of one micro-batch's masks and dropout: a function of the run's seed, the step and
    the micro-batch's slot only, so it does not depend on how many processes share the work."""
    return int(np.random.SeedSequence([seed, step, slot]).generate_state(1)[0])


# ---------------------------------------------------------------- learning-rate schedule

def warmup_cosine(step: int, warmup_steps: int, max_steps: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, *, model, optimizer, scheduler, scaler, step: int, epoch: int,
                    args: argparse.Namespace) -> None:
    """Everything needed to continue exactly: weights, optimizer and schedule state, the step, the
    sampler's epoch, the random states, and the options. Written under a temporary name and then
    renamed, so a crash while saving leaves the previous checkpoint intact.

    Rank 0 calls it; the random states are rank 0's (every micro-batch reseeds from its
    :func:`micro_batch_seed`, so no rank's training depends on them; they are kept for any
    randomness added outside the micro-batches)."""
    state = {
        "model": model.state_dict(), "model_config": vars(model.config).copy(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
        "step": step, "epoch": epoch,
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        "options": {key: _plain(value) for key, value in vars(args).items()},
    }
    partial = path.with_suffix(f".partial{os.getpid()}")
    torch.save(state, partial)
    os.replace(partial, path)


def load_pretrained(path) -> "NDT1Stitch":
    """The NDT1-stitch of a pretraining checkpoint (OUT_DIR/checkpoint.pt), on the CPU in eval mode.

    To adapt it to a new session with the core frozen, wrap it as
    ``api.FittedStitch(model, training.History())`` and use ``add_session`` + ``refit_read_in``.
    """
    from .models import NDT1Stitch

    state = torch.load(path, map_location="cpu", weights_only=False)
    model = NDT1Stitch(**state["model_config"])
    model.load_state_dict(state["model"])
    return model.eval()


def _plain(value):
    """An option as saved in a checkpoint (paths as strings)."""
    return str(value) if isinstance(value, Path) else value


def load_checkpoint(path: Path, args: argparse.Namespace, *, model, optimizer, scheduler, scaler) -> int:
    """Restore a :func:`save_checkpoint` into the given objects; returns the step to continue from.

    Raises ValueError when the checkpoint was made with different data, model or recipe options.
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state["options"]
    changed = {key: (saved.get(key), _plain(getattr(args, key))) for key in MUST_MATCH_ON_RESUME
               if saved.get(key) != _plain(getattr(args, key))}
    if changed:
        raise ValueError(f"{path} was written by a run with other options {changed} (saved, now); resume "
                         "with the same options, or use a new --out-dir to start another run")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state["step"]


# ---------------------------------------------------------------- throughput log

class ThroughputLog:
    """Appends one JSON line per logging step to ``path`` (rank 0) with the loss, the learning rate
    and the throughput since the last line: windows/s and tokens/s (one token per time bin) of
    every rank, and their sum over ranks (the global throughput)."""

    def __init__(self, path: Path | None, tokens_per_window: int):
        self.path, self.tokens_per_window = path, tokens_per_window
        self.windows, self.started = 0, time.perf_counter()

    def count(self, windows: int) -> None:
        self.windows += windows

    def rates(self) -> tuple[float, float]:
        """This rank's (windows/s, tokens/s) since the last call; restarts the clock."""
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # count the GPU work queued so far, not just its launch
        now = time.perf_counter()
        windows_per_s = self.windows / max(now - self.started, 1e-9)
        self.windows, self.started = 0, now
        return windows_per_s, windows_per_s * self.tokens_per_window

    def write(self, record: dict) -> None:
        if self.path is not None:
            with self.path.open("a") as out:
                out.write(json.dumps(record) + "\n")
