"""Every public figure of tutorial_utils.plotting carries its labels.

Each function is rendered (Agg backend) on small fake inputs; every axes must have a title and x/y
labels (and a z label in 3-D), and every image must have a colour bar (its own, or a shared one
with the same colours and limits). A new plotting function fails
``test_every_plotting_function_is_rendered`` until it gets a case here.
"""
import inspect
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402

from tutorial_utils import plotting  # noqa: E402
from tutorial_utils.training import History  # noqa: E402

RNG = np.random.default_rng(0)
B, T, N = 3, 20, 6


def _history(parts: bool):
    history = History(train_loss=[3.0, 2.0, 1.5], val_loss=[3.1, 2.2, 1.9], best_epoch=2)
    if parts:
        history.train_parts = {"poisson": [2.0, 1.5, 1.2], "velocity": [1.0, 0.5, 0.3]}
        history.val_parts = {"poisson": [2.1, 1.7, 1.5], "velocity": [1.0, 0.5, 0.4]}
    return history


def _maze_session():
    """The attributes plot_maze_trials reads, duck-typed (no NWB files needed)."""
    spikes = RNG.poisson(0.3, size=(4, 30, 8)).astype(np.float32)
    areas = np.array(["PMd"] * 3 + ["M1"] * 5)
    return SimpleNamespace(
        trials=lambda split: np.arange(3), all_spikes=lambda split=None: spikes, all_areas=areas,
        time_ms=np.arange(-250, -250 + 30 * 5, 5), trial_id=np.arange(4) + 10, condition=np.arange(4),
        hand_pos=np.cumsum(RNG.normal(size=(4, 30, 2)), axis=1), label="fake session", bin_ms=5)


def _curve(x):
    """A scaling.Curve with 2 seeds per point."""
    from tutorial_utils.scaling import Curve

    return Curve(x, [0, 1], {"co-bps": RNG.uniform(size=(len(x), 2)), "velocity R2": RNG.uniform(size=(len(x), 2))})


def _masking():
    spikes = torch.poisson(torch.full((B, T, N), 1.0))
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, ::5] = True
    return plotting.plot_masking(spikes, spikes.masked_fill(mask[..., None], 0), mask)


CASES = {
    "plot_lorenz_trial": lambda: plotting.plot_lorenz_trial(RNG.normal(size=(B, T, 3)), RNG.gamma(2, size=(B, T, N)),
                                                            RNG.poisson(1, size=(B, T, N))),
    "plot_masking": _masking,
    "plot_positional_encoding": lambda: plotting.plot_positional_encoding(torch.randn(T, 8)),
    "plot_attention_weights": lambda: plotting.plot_attention_weights(
        [torch.softmax(torch.randn(B, 2, T, T), -1) for _ in range(2)]),
    "plot_loss_history": lambda: plotting.plot_loss_history(_history(parts=False)),
    "plot_loss_history (named losses)": lambda: plotting.plot_loss_history(_history(parts=True)),
    "plot_rates_comparison": lambda: plotting.plot_rates_comparison(RNG.gamma(2, size=(B, T, N)),
                                                                    RNG.gamma(2, size=(B, T, N)),
                                                                    RNG.poisson(1, size=(B, T, N))),
    "plot_latents_3d": lambda: plotting.plot_latents_3d(RNG.normal(size=(B, T, 3)), RNG.normal(size=(B, T, 3)),
                                                        trials=range(B), r2=0.9),
    "plot_maze_trials": lambda: plotting.plot_maze_trials(_maze_session(), n_trials=2),
    "plot_embedding_pcs": lambda: plotting.plot_embedding_pcs(
        [(RNG.normal(size=(8, 2)), ["PMd"] * 4 + ["M1"] * 4, "session A"),
         (RNG.normal(size=(5, 2)), ["M1"] * 5, "session B")]),
    "plot_embedding_pcs (numbers, shared axes)": lambda: plotting.plot_embedding_pcs(
        [(RNG.normal(size=(8, 2)), RNG.normal(size=8), "session A"),
         (RNG.normal(size=(5, 2)), RNG.normal(size=5), "session B")], colour_label="true weight", shared_axes=True),
    "plot_lag_curves": lambda: plotting.plot_lag_curves(
        {"spikes": SimpleNamespace(lags=np.arange(10), r2=RNG.uniform(size=10), bin_ms=10, best_lag_ms=50)},
        chosen_ms=50, reference_ms={"NLB": 100}),
    "plot_velocity_traces": lambda: plotting.plot_velocity_traces(
        RNG.normal(size=(B, T, 2)), {"ridge": RNG.normal(size=(B, T, 2))}, np.arange(T) * 10, trials=(0, 1)),
    "plot_reach_trajectories": lambda: plotting.plot_reach_trajectories(
        [(RNG.normal(size=(B, T, 2)).cumsum(1), "true"), (RNG.normal(size=(B, T, 2)).cumsum(1), "decoded")],
        np.arange(B)),
    "plot_online_check": lambda: plotting.plot_online_check(
        RNG.normal(size=(T, 2)), RNG.normal(size=(T, 2)), RNG.normal(size=(T, 2)), 10, np.arange(T) * 10),
    "plot_time_vs_length": lambda: plotting.plot_time_vs_length(
        [100, 500, 1000], {"attention": [1.0, 8.0, 30.0], "SSM": [2.0, 6.0, 11.0], "kernel": [None, None, 0.5]},
        device="CPU, 1 thread"),
    "plot_scaling_curve": lambda: plotting.plot_scaling_curve(
        {"temporal": _curve([1, 2, 4]), "mtm": _curve([1, 2, 4])}, baselines={"from scratch": {"co-bps": 0.1}}),
    "plot_few_shot": lambda: plotting.plot_few_shot(_curve([5, 10, 60]), _curve([5, 10, 60])),
    "plot_mtm_table": lambda: plotting.plot_mtm_table(pd.DataFrame(
        RNG.normal(size=(3, 4)), index=["temporal", "neuron", "MtM"], columns=["a", "b", "c", "d"])),
    "plot_inter_region_truth": lambda: plotting.plot_inter_region_truth(
        {"temporal": {"A": 0.1, "B": -0.1}, "MtM": {"A": 0.2, "B": 0.0}}, {"A": True, "B": False}),
}


def public_plotting_functions() -> set[str]:
    return {name for name, fn in inspect.getmembers(plotting, inspect.isfunction)
            if fn.__module__ == plotting.__name__ and not name.startswith("_")}


def missing_labels(fig) -> list[str]:
    """What a reader would miss on ``fig``: one line per axes without a title or an axis label, or
    image without a colour bar."""
    fig.canvas.draw()
    colorbars = [ax._colorbar for ax in fig.axes if hasattr(ax, "_colorbar")]
    problems = []
    for i, ax in enumerate(fig.axes):
        if hasattr(ax, "_colorbar") or not ax.get_visible():
            continue
        where = f"axes {i} ({ax.get_title() or 'untitled'})"
        if not any(ax.get_title(loc=loc) for loc in ("center", "left", "right")):
            problems.append(f"{where}: no title")
        labels = {"x": ax.get_xlabel(), "y": ax.get_ylabel()}
        if hasattr(ax, "get_zlabel"):
            labels["z"] = ax.get_zlabel()
        problems += [f"{where}: no {axis} label" for axis, label in labels.items() if not label]
        for image in list(ax.images) + [c for c in ax.collections if isinstance(c, QuadMesh)]:
            shared = any(cb.mappable.get_cmap().name == image.get_cmap().name
                         and cb.mappable.get_clim() == image.get_clim() for cb in colorbars)
            if image.colorbar is None and not shared:
                problems.append(f"{where}: an image without a colour bar")
    return problems


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_every_plotting_function_is_rendered():
    covered = {name.split(" ")[0] for name in CASES}
    assert public_plotting_functions() == covered, \
        "give each public function of tutorial_utils/plotting.py a case in CASES (small fake inputs)"


@pytest.mark.parametrize("case", CASES)
def test_every_axes_has_a_title_labels_and_colour_bars(case):
    fig = CASES[case]()
    assert isinstance(fig, plt.Figure), "plotting functions return their Figure"
    assert missing_labels(fig) == []


def test_the_check_finds_a_missing_label_and_a_missing_colour_bar():
    fig, axes = plt.subplots(1, 2)
    axes[0].plot([0, 1])
    axes[0].set(title="a line", xlabel="time")  # no y label
    axes[1].imshow(np.eye(3))
    axes[1].set(title="an image", xlabel="x", ylabel="y")  # no colour bar
    assert missing_labels(fig) == ["axes 0 (a line): no y label", "axes 1 (an image): an image without a colour bar"]
