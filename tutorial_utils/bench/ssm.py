"""How the selective scan and the SSM block scale with sequence length (Notebook 4B).

    python -m tutorial_utils.bench ssm --profile quick

Two tables, forward + backward, timed on this machine (the GPU if there is one):

* the scan alone: the sequential reference loop, the chunked pure-PyTorch scan and, when
  mamba-ssm is installed on a GPU, its fused kernel (one Mamba block's scan: a course-size model);
* one layer per sequence: attention (a transformer encoder layer, models/ndt1.py's TransformerCore)
  against one Mamba block (models/mamba.py), time per sequence against its length.

Timings are the fastest of a few repeats; on a shared, loaded machine they are inflated.
"""
from __future__ import annotations

import time

import torch

from ..models.mamba import MambaBackbone, MambaConfig
from ..models.ndt1 import TransformerCore
from ..models.selective_scan import mamba_ssm_scan, selective_scan_parallel, selective_scan_sequential
from ..runtime import get_device, get_profile

# One Mamba block of a course-size model: d_model 32, expand 2 -> 64 channels, 16 states.
SCAN_SHAPE = {"batch": 2, "channels": 64, "states": 16}


def _seconds(step, device: torch.device, repeats: int) -> float:
    """Fastest of ``repeats`` runs of ``step()`` (after one warm-up run), in seconds."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def _scan_inputs(length: int, device, batch: int, channels: int, states: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u, z = (torch.randn(batch, channels, length, generator=g) for _ in range(2))
    delta = 0.5 * torch.randn(batch, channels, length, generator=g)
    A = -torch.arange(1.0, states + 1).repeat(channels, 1)  # Mamba's initial A
    B, C = (torch.randn(batch, states, length, generator=g) for _ in range(2))
    # softplus(-4 +- 1) = 0.007-0.05: step sizes like a freshly initialised Mamba's (0.001-0.1)
    D, delta_bias = torch.ones(channels), torch.full((channels,), -4.0)
    return [x.to(device).requires_grad_() for x in (u, delta, A, B, C, D, z, delta_bias)]


def time_scans(lengths, device=None, repeats: int = 10, sequential_up_to: int = 2000, **shape) -> dict:
    """Forward + backward time (ms) of each scan implementation at each length.

    The fastest of ``repeats`` runs (milliseconds each, so a busy machine rarely spoils all of them);
    the slow sequential loop gets two.

    Returns {"lengths", "sequential_ms", "parallel_ms", "kernel_ms"}; a missing implementation (no
    kernel; a sequential loop longer than ``sequential_up_to``) has None.
    """
    device = torch.device(device or get_device())
    shape = {**SCAN_SHAPE, **shape}
    kernel = mamba_ssm_scan() if device.type == "cuda" else None
    implementations = {"sequential": selective_scan_sequential, "parallel": selective_scan_parallel, "kernel": kernel}
    result = {"lengths": list(lengths), **{f"{name}_ms": [] for name in implementations}}
    for length in lengths:
        inputs = _scan_inputs(length, device, **shape)
        for name, scan in implementations.items():
            if scan is None or (name == "sequential" and length > sequential_up_to):
                result[f"{name}_ms"].append(None)
                continue

            def step(scan=scan):
                scan(*inputs, delta_softplus=True).sum().backward()

            runs = 2 if name == "sequential" else repeats
            result[f"{name}_ms"].append(round(1000 * _seconds(step, device, runs), 3))
    return result


def time_attention_vs_ssm(lengths, d_model: int = 32, batch: int = 4, device=None, repeats: int = 2) -> dict:
    """Forward + backward time per sequence (ms) of one attention layer and one Mamba block.

    Both at width ``d_model``, on ``batch`` sequences of each length. Returns {"lengths",
    "attention_ms", "ssm_ms", "device"}.
    """
    device = torch.device(device or get_device())
    torch.manual_seed(0)
    attention = TransformerCore(d_model, max(lengths), n_layers=1, n_heads=2, dropout=0.0).to(device)
    ssm = MambaBackbone(MambaConfig(d_model=d_model, n_layers=1)).to(device)
    result = {"lengths": list(lengths), "attention_ms": [], "ssm_ms": [], "device": describe_device(device)}
    for length in lengths:
        tokens = torch.randn(batch, length, d_model, device=device)
        for name, model in (("attention", attention), ("ssm", ssm)):
            def step(model=model):
                model(tokens).square().mean().backward()

            result[f"{name}_ms"].append(round(1000 * _seconds(step, device, repeats) / batch, 3))
    return result


def describe_device(device) -> str:
    """'NVIDIA H100 80GB HBM3' or 'CPU, 1 thread' — what a figure's title should name."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'s' if threads > 1 else ''}"


def _table(title: str, lengths, columns: dict) -> str:
    def cell(value):
        return f"{value:>12.2f}" if value is not None else f"{'-':>12}"

    lines = [title, f"{'length':>7} " + " ".join(f"{name:>12}" for name in columns)]
    for i, length in enumerate(lengths):
        lines.append(f"{length:>7} " + " ".join(cell(values[i]) for values in columns.values()))
    return "\n".join(lines)


def bench_ssm(profile_name: str | None = None) -> dict:
    """The scans and the layers over lengths 100-2000 (quick: 100-1000); speed-ups at length 1000."""
    profile, device = get_profile(profile_name), get_device()
    lengths = (100, 500, 1000) if profile.name == "quick" else (100, 250, 500, 1000, 2000)
    scans = time_scans(lengths, device)
    layers = time_attention_vs_ssm(lengths, device=device)
    at = lengths.index(1000)
    speedups = {"parallel_vs_sequential": round(scans["sequential_ms"][at] / scans["parallel_ms"][at], 1)}
    if scans["kernel_ms"][at] is not None:
        speedups["kernel_vs_parallel"] = round(scans["parallel_ms"][at] / scans["kernel_ms"][at], 1)
    print(_table(f"selective scan, forward + backward, ms (batch {SCAN_SHAPE['batch']}, {SCAN_SHAPE['channels']} "
                 f"channels, {SCAN_SHAPE['states']} states; {layers['device']})", lengths,
                 {k[:-3]: scans[k] for k in ("sequential_ms", "parallel_ms", "kernel_ms")}))
    print(_table(f"one layer, forward + backward, ms per sequence (d_model 32; {layers['device']})", lengths,
                 {"attention": layers["attention_ms"], "ssm": layers["ssm_ms"]}))
    print("at length 1000:", ", ".join(f"{k.replace('_', ' ')} {v}x" for k, v in speedups.items()))
    return {"profile": profile.name, "device": layers["device"], "scan_shape": SCAN_SHAPE, "scans": scans,
            "layers": layers, "speedups_at_1000": speedups}
