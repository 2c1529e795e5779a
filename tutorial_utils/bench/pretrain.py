"""Throughput of scripts/pretrain.py with 1 and 2 processes (Notebook 4C quotes the table).

    python -m tutorial_utils.bench pretrain --profile quick

Each run is the real script, launched the way a user launches it (plainly for 1 process, with
``torchrun --standalone --nproc_per_node 2`` for 2), on the synthetic stand-in. Every rank keeps
the same micro-batch, so the global batch grows with the processes (weak scaling, the usual way to
use more GPUs). The numbers are the median over the logging intervals after the first (warm-up).
On CPU each process gets one thread (gloo between them), so 2 processes use 2 cores; on a machine
with 2+ GPUs each process gets a GPU (NCCL). On a shared or 1-core CPU expect no speed-up.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from ..runtime import get_profile

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "pretrain.py"


def pretrain_flags(processes: int, per_rank_batch: int, steps: int, log_every: int) -> list[str]:
    """The script's options for one benchmark run (the output folder comes on top)."""
    return ["--synthetic", "--sessions", "mc_maze_small", "mc_maze_medium",
            "--global-batch-size", str(per_rank_batch * processes), "--max-steps", str(steps),
            "--log-every", str(log_every), "--save-every", str(steps)]


def launcher(processes: int) -> list[str]:
    """How a user starts it: plain python for one process, torchrun for several."""
    if processes == 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]


def measure(processes: int, per_rank_batch: int, steps: int, log_every: int, scratch: Path) -> dict:
    """One run of the script; its throughput is the median over the logging intervals after the first."""
    out_dir = scratch / f"run{processes}"
    flags = pretrain_flags(processes, per_rank_batch, steps, log_every)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([*launcher(processes), str(SCRIPT), *flags, "--out-dir", str(out_dir)],
                         env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"scripts/pretrain.py with {processes} process(es) failed:\n{run.stderr[-4000:]}")
    lines = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()][1:]
    shutil.rmtree(out_dir)
    return {
        "processes": processes, "global_batch": per_rank_batch * processes, "steps": steps,
        "windows_per_s": statistics.median(line["windows_per_s"] for line in lines),
        "tokens_per_s": statistics.median(line["tokens_per_s"] for line in lines),
        "windows_per_s_per_rank": [statistics.median(line["windows_per_s_per_rank"][r] for line in lines)
                                   for r in range(processes)],
        "final_loss": lines[-1]["loss"],
        "command": (f"torchrun --standalone --nproc_per_node {processes}" if processes > 1 else "python")
                   + " scripts/pretrain.py " + " ".join(flags),
    }


def bench_pretrain(profile_name: str | None = None, process_counts=None, repeats: int = 2) -> dict:
    """Windows/s and tokens/s of scripts/pretrain.py for each process count; prints a table.

    Each count runs ``repeats`` times, interleaved, and its fastest run is kept: on a shared
    machine the slower runs measure the neighbours more than the script.
    """
    profile = get_profile(profile_name)
    per_rank_batch, steps, log_every = (16, 40, 5) if profile.name == "quick" else (64, 200, 20)
    gpus = torch.cuda.device_count()
    process_counts = process_counts or ((1, 2) if gpus == 0 or gpus >= 2 else (1,))
    runs = {processes: [] for processes in process_counts}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(repeats):
            for processes in process_counts:
                runs[processes].append(measure(processes, per_rank_batch, steps, log_every, Path(scratch)))
    rows = [max(runs[processes], key=lambda run: run["windows_per_s"]) for processes in process_counts]
    for row in rows:
        row["windows_per_s_all_repeats"] = [run["windows_per_s"] for run in runs[row["processes"]]]

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = (f"{gpus} x {torch.cuda.get_device_name(0)} (NCCL)" if gpus
              else f"CPU, 1 thread per process (gloo), {cores} cores available")
    print(f"scripts/pretrain.py throughput, {device}, profile {profile.name}, {per_rank_batch} windows per rank "
          f"per step, best of {repeats}")
    print(f"{'processes':>9} {'global batch':>12} {'windows/s':>10} {'tokens/s':>10} {'per rank windows/s':>22} "
          f"{'speed-up':>8}")
    for row in rows:
        per_rank = ", ".join(f"{v:.0f}" for v in row["windows_per_s_per_rank"])
        speedup = row["windows_per_s"] / rows[0]["windows_per_s"]
        print(f"{row['processes']:>9} {row['global_batch']:>12} {row['windows_per_s']:>10.0f} "
              f"{row['tokens_per_s']:>10.0f} {per_rank:>22} {speedup:>7.2f}x")
    return {"profile": profile.name, "device": device, "per_rank_batch": per_rank_batch, "repeats": repeats,
            "rows": rows}
