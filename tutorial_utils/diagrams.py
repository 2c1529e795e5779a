"""Architecture diagrams of the course's models, drawn with matplotlib (offline, no image files).

    draw_ndt1()         NDT1: time-bin tokens -> positional encoding -> pre-norm encoder layers
                        -> read-out -> log-rates, and what masking hides (Notebook 1)
    draw_ndt1_stitch()  NDT1-stitch: one read-in/read-out pair per session around a shared core,
                        and how a mixed batch is routed (Notebook 2)

Each returns its Figure. The boxes carry the names of the modules in ``tutorial_utils.models``
(``read_in``, ``core``, ``read_out``, ``session_embedding``), so the picture and the code match.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

# one colour per kind of part, shared by both diagrams
COLORS = {"data": "#f2f2f2", "read": "#cfe2f3", "position": "#fde9c9", "attention": "#f4cccc",
          "feed_forward": "#d9ead3", "norm": "#ead1dc", "output": "#fff2cc", "mask": "tab:orange"}
SESSION_COLORS = ("tab:blue", "tab:green", "tab:purple", "tab:brown")


def _box(ax, x, y, width, height, text, color, fontsize=9, **kwargs):
    """A rounded box centred on (x, y) with centred text."""
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=color,
                                edgecolor=kwargs.pop("edgecolor", "0.3"), lw=kwargs.pop("lw", 1.0)))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, **kwargs)


def _arrow(ax, start, end, color="0.25", **kwargs):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, color=color, lw=1.2,
                                 shrinkA=0, shrinkB=0, **kwargs))


def _canvas(width, height, figsize):
    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    ax.set(xlim=(0, width), ylim=(0, height), aspect="equal")
    ax.axis("off")
    return fig, ax


def _tokens(ax, x0, y0, n_bins, n_rows, cell, masked=(), label_every=None):
    """A little (neurons x time bins) grid: one column per token, masked columns in orange."""
    for t in range(n_bins):
        for n in range(n_rows):
            shade = COLORS["mask"] if t in masked else ("0.25" if (t * 7 + n * 3) % 5 == 0 else "white")
            ax.add_patch(Rectangle((x0 + t * cell, y0 + n * cell), cell, cell, facecolor=shade,
                                   edgecolor="0.6", lw=0.4))
    ax.add_patch(Rectangle((x0, y0), n_bins * cell, n_rows * cell, fill=False, edgecolor="0.2", lw=1.0))


def draw_ndt1(n_layers: int = 2):
    """NDT1 as used in Notebook 1, bottom to top: spikes to log-rates, with one encoder layer opened up."""
    fig, ax = _canvas(12.0, 10.2, figsize=(10, 9.0))
    ax.set_ylim(-0.9, 10.2)
    x = 3.6  # the main column
    # input: spikes as tokens, some masked
    _tokens(ax, x - 2.4, 0.3, n_bins=12, n_rows=4, cell=0.4, masked={2, 7, 8})
    ax.text(x, 0.15, "spikes (B, T, N): one column = one time bin = one token\n"
                    "orange: bins hidden by the mask (set to 0)", ha="center", va="top", fontsize=8.5)
    steps = [
        (2.85, "read_in: linear N → D\n(identity when D = N)", COLORS["read"]),
        (3.95, "+ positional encoding of bin t", COLORS["position"]),
        (5.6, f"encoder layer × {n_layers}\n(pre-norm; detail on the right)", COLORS["attention"]),
        (7.05, "final LayerNorm", COLORS["norm"]),
        (8.05, "read_out: linear D → N", COLORS["read"]),
        (9.15, "log-rates (B, T, N) → exp → rates\nPoisson NLL scored on the masked bins", COLORS["output"]),
    ]
    previous_top = 0.3 + 4 * 0.4
    for y, text, color in steps:
        height = 1.3 if "encoder" in text else 0.75
        _arrow(ax, (x, previous_top), (x, y - height / 2))
        _box(ax, x, y, 4.6, height, text, color)
        previous_top = y + height / 2
    # one encoder layer, opened up
    left, right, bottom, top = 7.3, 11.7, 1.0, 9.6
    ax.add_patch(FancyBboxPatch((left, bottom), right - left, top - bottom, boxstyle="round,pad=0.05",
                                facecolor="none", edgecolor="0.5", ls="--"))
    ax.text((left + right) / 2, top - 0.35, "one encoder layer", ha="center", fontsize=10, weight="bold")
    _arrow(ax, (x + 2.3, 5.6), (left, 5.6), color="0.5", ls="--")
    cx, stream = (left + right) / 2 + 0.55, left + 0.45  # blocks, and the residual stream on the left
    ax.plot([stream, stream], [bottom + 0.3, top - 0.75], color="0.25", lw=1.2)
    ax.text(stream - 0.1, bottom + 0.45, "x", ha="right", fontsize=10)
    ax.text(stream - 0.1, top - 0.95, "x", ha="right", fontsize=10)
    blocks = [
        (1.9, 3.45, 4.6, "self-attention\nsoftmax(q kᵀ / √d) v", COLORS["attention"]),
        (5.25, 6.8, 7.95, "feed-forward\nlinear D→4D, GELU, linear 4D→D", COLORS["feed_forward"]),
    ]
    for y_norm, y_block, y_add, text, color in blocks:
        _arrow(ax, (stream, y_norm - 0.5), (cx - 1.3, y_norm), connectionstyle="arc3,rad=-0.25")
        _box(ax, cx, y_norm, 2.6, 0.55, "LayerNorm", COLORS["norm"], fontsize=8.5)
        _arrow(ax, (cx, y_norm + 0.28), (cx, y_block - 0.45))
        _box(ax, cx, y_block, 3.0, 0.9, text, color, fontsize=8.5)
        _arrow(ax, (cx, y_block + 0.45), (stream + 0.17, y_add), connectionstyle="arc3,rad=0.3")
        ax.add_patch(plt.Circle((stream, y_add), 0.17, facecolor="white", edgecolor="0.25", zorder=3))
        ax.text(stream, y_add, "+", ha="center", va="center", fontsize=10, zorder=4)
    ax.text(cx, bottom + 0.35, "x = x + attention(norm1(x))\nx = x + feed_forward(norm2(x))",
            ha="center", va="center", fontsize=8.5, family="monospace")
    ax.set_title("NDT1: a masked autoencoder of spiking activity", fontsize=12)
    return fig


def draw_ndt1_stitch(session_units=(("session A", 137), ("session B", 152), ("session C", 98))):
    """NDT1-stitch: a read-in and read-out per session around one shared transformer core.

    ``session_units``: (name, number of units) per session, as labels for the boxes.
    """
    n = len(session_units)
    width = max(10.0, 3.3 * n + 0.8)
    fig, ax = _canvas(width, 9.0, figsize=(width * 0.85, 7.6))
    xs = [width / 2 + (i - (n - 1) / 2) * 3.3 for i in range(n)]
    core_y, core_half = 4.7, 0.75
    for (name, units), x, color in zip(session_units, xs, SESSION_COLORS):
        _box(ax, x, 0.7, 2.9, 0.8, f"{name}\nspikes (B, T, {units})", COLORS["data"], edgecolor=color, lw=2)
        _arrow(ax, (x, 1.1), (x, 1.75), color=color)
        _box(ax, x, 2.15, 2.9, 0.8, f"read_in[{name.split()[-1]}]\nlinear {units} → D", COLORS["read"],
             edgecolor=color, lw=2)
        _arrow(ax, (x, 2.55), (x, 3.05), color=color)
        _box(ax, x, 3.35, 2.9, 0.55, f"+ session_embedding[{name.split()[-1]}]", COLORS["position"],
             edgecolor=color, lw=2, fontsize=8.5)
        _arrow(ax, (x, 3.62), (width / 2 + (x - width / 2) * 0.6, core_y - core_half), color=color)
        _arrow(ax, (width / 2 + (x - width / 2) * 0.6, core_y + core_half), (x, 6.05), color=color)
        _box(ax, x, 6.45, 2.9, 0.8, f"read_out[{name.split()[-1]}]\nlinear D → {units}", COLORS["read"],
             edgecolor=color, lw=2)
        _arrow(ax, (x, 6.85), (x, 7.4), color=color)
        _box(ax, x, 7.8, 2.9, 0.8, f"log-rates (B, T, {units})", COLORS["output"], edgecolor=color, lw=2)
    _box(ax, width / 2, core_y, width - 1.2, 2 * core_half,
         "shared core (the same weights for every session)\n+ positional encoding → pre-norm encoder layers "
         "→ LayerNorm\nlatents (B, T, D)", COLORS["attention"], fontsize=9.5, lw=1.5)
    ax.text(width / 2, 8.6, "Each trial carries its session's id; a mixed batch is routed trial by trial "
            "through its own read-in and read-out.", ha="center", fontsize=9)
    ax.set_title("NDT1-stitch: per-session read-in/read-out around one shared core", fontsize=12)
    return fig
