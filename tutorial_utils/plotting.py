"""The course's figures. Every function returns its matplotlib Figure (the notebook shows it)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def plot_lorenz_trial(latents, rates, spikes, trial: int = 0, title_suffix: str = ""):
    """One trial of a Lorenz dataset: the 3 latents, every neuron's rate, and the spike raster.

    Rates and raster share their axes (neuron 0 at the bottom), so a row of one is the row of the other.
    """
    latents, rates, spikes = _numpy(latents)[trial], _numpy(rates)[trial], _numpy(spikes)[trial]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), constrained_layout=True)
    for values, name in zip(latents.T, "xyz"):
        axes[0].plot(values, label=name)
    axes[0].set(title="true latents", xlabel="time bin", ylabel="latent value (a.u.)")
    axes[0].legend(fontsize=8, title="latent", title_fontsize=8)
    image = axes[1].imshow(rates.T, aspect="auto", cmap="viridis", interpolation="nearest", origin="lower")
    fig.colorbar(image, ax=axes[1], label="rate (expected counts / bin)")
    axes[1].set(title="firing rates (from the latents)", xlabel="time bin", ylabel="neuron")
    t, n = np.nonzero(spikes)
    axes[2].scatter(t, n, s=np.clip(spikes[t, n], 1, 4) * 4, marker="|", color="k")
    axes[2].set(title="spike counts (Poisson draws)", xlabel="time bin", ylabel="neuron",
                xlim=(-0.5, spikes.shape[0] - 0.5), ylim=(-0.5, spikes.shape[1] - 0.5))
    fig.suptitle(f"Lorenz dataset, trial {trial}{title_suffix}")
    return fig


def plot_masking(spikes, masked_spikes, mask, trial: int = 0):
    """The pretext task for one trial: the input, and the masked input with the hidden bins marked."""
    spikes, masked, mask = _numpy(spikes)[trial], _numpy(masked_spikes)[trial], _numpy(mask)[trial]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3), sharey=True, constrained_layout=True)
    vmax = max(spikes.max(), 1)
    for ax, data, title in [(axes[0], spikes, "input spikes"),
                            (axes[1], masked, "masked input (orange = hidden bins, all zero)")]:
        image = ax.imshow(data.T, aspect="auto", cmap="Greys", vmin=0, vmax=vmax, interpolation="nearest",
                          origin="lower")
        ax.set(title=title, xlabel="time bin (= token)", ylabel="neuron")
    for t in np.flatnonzero(mask):
        axes[1].axvspan(t - 0.5, t + 0.5, color="tab:orange", alpha=0.35, lw=0)
    fig.colorbar(image, ax=axes, label="spike count")
    return fig


def plot_positional_encoding(encoding):
    """A (time bins, d_model) positional encoding as an image."""
    encoding = _numpy(encoding)
    fig, ax = plt.subplots(figsize=(6, 3), constrained_layout=True)
    image = ax.imshow(encoding.T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest",
                      origin="lower")
    fig.colorbar(image, ax=ax, label="value added to the token")
    ax.set(title="sinusoidal positional encoding", xlabel="time bin", ylabel="latent dimension")
    return fig


def plot_attention_weights(weights, trial: int = 0, title: str = "attention weights"):
    """Attention weights of one trial, one panel per layer (head-averaged).

    ``weights``: a list with one (trials, heads, T, T) tensor per layer, as returned by
    :func:`tutorial_utils.models.ndt1_by_hand.attention_weights`. Row t: how much query bin t
    takes from each key bin (each row sums to 1).
    """
    fig, axes = plt.subplots(1, len(weights), figsize=(4.2 * len(weights), 3.6), squeeze=False,
                             constrained_layout=True)
    for i, (ax, layer_weights) in enumerate(zip(axes[0], weights)):
        image = ax.imshow(_numpy(layer_weights)[trial].mean(axis=0), cmap="magma", interpolation="nearest",
                          origin="lower", vmin=0)
        fig.colorbar(image, ax=ax, label="weight")
        ax.set(title=f"layer {i + 1}", xlabel="key bin (attended to)", ylabel="query bin (attending)")
    fig.suptitle(f"{title} (trial {trial})")
    return fig


def plot_loss_history(history, title: str = "training", ylabel: str = "masked Poisson NLL"):
    """Train and validation loss per epoch, with the restored best epoch marked.

    When the objective returned several named losses (``history.train_parts``), each gets its own
    panel after the optimised total.
    """
    panels = [("total" if history.train_parts else ylabel, history.train_loss, history.val_loss)]
    panels += [(name, values, history.val_parts.get(name, [])) for name, values in history.train_parts.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 if len(panels) == 1 else 4 * len(panels), 3),
                             squeeze=False, constrained_layout=True)
    for ax, (name, train_values, val_values) in zip(axes[0], panels):
        ax.plot(train_values, label="train")
        if val_values:
            ax.plot(val_values, label="validation")
            ax.axvline(history.best_epoch, color="grey", ls=":", label=f"best epoch ({history.best_epoch})")
        ax.set(title=f"{name} per epoch", xlabel="epoch", ylabel=name)
    axes[0][0].legend()
    fig.suptitle(title)
    return fig


def plot_rates_comparison(true_rates, predicted_rates, spikes=None, trial: int = 0, neurons=(0, 1, 2, 3)):
    """True vs inferred rates of a few neurons on one trial (spikes as ticks if given)."""
    true_rates, predicted_rates = _numpy(true_rates)[trial], _numpy(predicted_rates)[trial]
    fig, axes = plt.subplots(1, len(neurons), figsize=(3.2 * len(neurons), 2.6), sharex=True,
                             constrained_layout=True)
    for ax, neuron in zip(np.atleast_1d(axes), neurons):
        ax.plot(true_rates[:, neuron], color="k", label="true rate")
        ax.plot(predicted_rates[:, neuron], color="tab:red", label="inferred rate")
        if spikes is not None:
            counts = _numpy(spikes)[trial, :, neuron]
            t = np.flatnonzero(counts)
            ax.plot(t, np.zeros_like(t) - 0.05 * true_rates[:, neuron].max(), "|", color="grey", label="spikes")
        ax.set(title=f"neuron {neuron}", xlabel="time bin", ylabel="counts / bin")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle(f"held-out trial {trial}: true and inferred firing rates")
    return fig


def plot_latents_3d(true_latents, aligned_latents, trials=range(8), r2: float | None = None):
    """True Lorenz latents and the model's linearly aligned latents, side by side in 3-D.

    The same trial has the same colour in both panels, so matching shapes can be compared.
    """
    true_latents, aligned_latents = _numpy(true_latents), _numpy(aligned_latents)
    trials = list(trials)
    fig = plt.figure(figsize=(10, 4.5), constrained_layout=True)
    colors = plt.cm.viridis(np.linspace(0, 1, len(trials)))
    for i, (data, title) in enumerate([(true_latents, "true latents"),
                                       (aligned_latents, "model latents, linearly aligned")]):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        for color, trial in zip(colors, trials):
            ax.plot(*data[trial].T, color=color, lw=1.2, label=f"trial {trial}")
        ax.set(title=title, xlabel="x", ylabel="y", zlabel="z")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="held-out trial", title_fontsize=7)
    fig.suptitle("held-out trials" + (f"; alignment R$^2$ = {r2:.3f}" if r2 is not None else ""))
    return fig


def plot_maze_trials(session, trials=None, n_trials: int = 3):
    """Rasters of a few MC_Maze trials (PMd units above M1, in two colours) and their hand paths.

    ``session`` is a :class:`tutorial_utils.data.MazeSession`; ``trials`` are indices into
    it (default: the first ``n_trials`` train trials). Synthetic sessions say so in the title.
    """
    trials = list(session.trials("train")[:n_trials] if trials is None else trials)
    spikes, areas = session.all_spikes(), session.all_areas
    order = np.argsort(areas != "PMd", kind="stable")  # PMd rows first, then M1
    colors = {"PMd": "tab:purple", "M1": "tab:green"}
    fig, axes = plt.subplots(1, len(trials) + 1, figsize=(3.4 * (len(trials) + 1), 3.8),
                             constrained_layout=True)
    for ax, trial in zip(axes, trials):
        for row, unit in enumerate(order):
            times = session.time_ms[np.flatnonzero(spikes[trial, :, unit] > 0)]
            ax.plot(times, np.full(times.shape, row), "|", ms=2, color=colors[areas[unit]])
        ax.axvline(0, color="k", lw=0.8, ls="--")
        ax.set(title=f"trial {session.trial_id[trial]} (condition {session.condition[trial]})",
               xlabel="time from movement onset (ms)", ylabel="unit (PMd above M1)", ylim=(len(order), -1))
    n_pmd = int((areas == "PMd").sum())
    axes[0].set_yticks([n_pmd / 2, n_pmd + (len(areas) - n_pmd) / 2], ["PMd", "M1"])
    for trial in trials:
        axes[-1].plot(*session.hand_pos[trial].T, label=f"trial {session.trial_id[trial]}")
    axes[-1].set(title="hand position", xlabel="x (mm)", ylabel="y (mm)", aspect="equal")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{session.label}, {session.bin_ms} ms bins")
    return fig


def plot_embedding_pcs(panels, title: str = "unit embeddings, first two PCs", colour_label: str | None = None,
                       shared_axes: bool = False):
    """Scatter plots of unit embeddings' first two PCs, one panel per session.

    ``panels``: list of (pcs (units, 2), colours (units,), panel title). ``colours`` are either
    category labels (e.g. the brain area: a legend) or numbers (e.g. a true tuning weight: one
    diverging colour map centred on 0, shared by every panel, with a colour bar named
    ``colour_label``). ``shared_axes=True`` gives every panel the same axes, for PCs of one joint
    PCA, so that where units sit can be compared across panels.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + (1.0 if colour_label else 0), 3.8),
                             squeeze=False, constrained_layout=True, sharex=shared_axes, sharey=shared_axes)
    palette = {"PMd": "tab:purple", "M1": "tab:green"}
    numeric = all(np.issubdtype(np.asarray(colours).dtype, np.number) for _, colours, _ in panels)
    if numeric:
        limit = max(float(np.abs(np.asarray(colours)).max()) for _, colours, _ in panels) or 1.0
    for ax, (pcs, colours, panel_title) in zip(axes[0], panels):
        pcs, colours = _numpy(pcs), np.asarray(colours)
        if numeric:
            points = ax.scatter(*pcs.T, c=colours, cmap="RdBu_r", vmin=-limit, vmax=limit, s=18,
                                edgecolor="0.3", linewidth=0.3)
        else:
            for i, label in enumerate(sorted(set(colours.tolist()))):
                chosen = colours == label
                ax.scatter(*pcs[chosen].T, s=14, alpha=0.8, label=str(label),
                           color=palette.get(label, plt.cm.tab10(i % 10)))
            ax.legend(fontsize=8)
        ax.set(title=panel_title, xlabel="PC 1", ylabel="PC 2")
    if numeric:
        fig.colorbar(points, ax=axes[0].tolist(), label=colour_label or "value")
    fig.suptitle(title)
    return fig


# ---------------------------------------------------------------- Notebook 3: decoding

def plot_lag_curves(curves, chosen_ms: float | None = None, reference_ms: dict | None = None):
    """Decoding R^2 against lag. ``curves``: {label: LagCurve}; ``reference_ms``: {label: lag in ms} lines."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4), constrained_layout=True)
    for label, curve in curves.items():
        lags_ms = np.asarray(curve.lags) * curve.bin_ms
        line, = ax.plot(lags_ms, curve.r2, label=label)
        ax.plot(curve.best_lag_ms, curve.r2.max(), "o", color=line.get_color())
    for i, (label, lag_ms) in enumerate((reference_ms or {}).items()):
        ax.axvline(lag_ms, color="grey", ls=(":", "--", "-.")[i % 3], lw=1, label=label)
    if chosen_ms is not None:
        ax.axvline(chosen_ms, color="k", lw=1.5, label=f"chosen: {chosen_ms:g} ms")
    ax.set(xlabel="lag: behaviour follows activity by (ms)", ylabel="cross-validated R$^2$",
           title="decoding R$^2$ against lag")
    ax.legend(fontsize=7)
    return fig


def plot_velocity_traces(true_velocity, decoded: dict, time_ms, trials=(0, 1, 2)):
    """True vs decoded velocity (x and y) on a few trials. ``decoded``: {label: (trials, T', 2)} aligned
    with ``true_velocity`` (trials, T', 2) and ``time_ms`` (T',)."""
    true_velocity = _numpy(true_velocity)
    fig, axes = plt.subplots(2, len(trials), figsize=(3.6 * len(trials), 4.6), sharex=True, squeeze=False,
                             constrained_layout=True)
    for column, trial in enumerate(trials):
        for row, axis_name in enumerate("xy"):
            ax = axes[row][column]
            ax.plot(time_ms, true_velocity[trial, :, row], color="k", lw=2, label="true")
            for label, values in decoded.items():
                ax.plot(time_ms, _numpy(values)[trial, :, row], lw=1, label=label)
            ax.set(title=f"held-out trial {trial}, {axis_name}", ylabel=f"{axis_name} velocity (mm/s)",
                   xlabel="time from movement onset (ms)")
    axes[0][0].legend(fontsize=7)
    return fig


def plot_reach_trajectories(panels, condition, title: str = "hand paths integrated from velocity"):
    """Side-by-side hand paths, coloured by reach condition. ``panels``: list of (positions
    (trials, T, 2), panel title); ``condition``: (trials,) ints."""
    condition = np.asarray(condition)
    colours = plt.cm.hsv(np.linspace(0, 0.9, max(int(condition.max()) + 1, 1)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.8), squeeze=False,
                             constrained_layout=True, sharex=True, sharey=True)
    for ax, (positions, panel_title) in zip(axes[0], panels):
        for trial, path in enumerate(_numpy(positions)):
            ax.plot(*path.T, color=colours[condition[trial]], lw=1)
            ax.plot(*path[-1], "o", ms=2.5, color=colours[condition[trial]])
        ax.set(title=panel_title, xlabel="x (mm)", ylabel="y (mm)", aspect="equal")
    fig.suptitle(title)
    return fig


def plot_online_check(batch_output, streamed_output, perturbed_output, perturb_from: int, time_ms):
    """Streaming decoder: batch vs bin-by-bin outputs, and the effect of changing the future.

    All outputs are (T, d) for one trial; ``perturb_from`` is the first perturbed bin."""
    batch_output, streamed_output, perturbed_output = (_numpy(x) for x in (batch_output, streamed_output,
                                                                             perturbed_output))
    time_ms = np.asarray(time_ms)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), constrained_layout=True)
    axes[0].plot(time_ms, batch_output[:, 0], color="k", lw=3, alpha=0.4, label="whole trial at once")
    axes[0].plot(time_ms, streamed_output[:, 0], color="tab:red", lw=1, ls="--", label="streamed bin by bin")
    axes[0].set(title="online = batch", xlabel="time from movement onset (ms)", ylabel="decoded x velocity (mm/s)")
    axes[0].legend(fontsize=8)
    difference = np.abs(perturbed_output - batch_output).max(axis=1)
    axes[1].plot(time_ms, difference, color="tab:purple")
    axes[1].axvspan(time_ms[perturb_from], time_ms[-1], color="tab:orange", alpha=0.2, label="perturbed spikes")
    axes[1].set(title="changing future spikes", xlabel="time from movement onset (ms)",
                ylabel="|change in output| (mm/s)")
    axes[1].legend(fontsize=8)
    return fig


def plot_time_vs_length(lengths, times_ms: dict, device: str, title: str = "time per sequence vs its length",
                        ylabel: str = "forward + backward (ms per sequence)"):
    """Measured times against sequence length, one line per method, on log-log axes.

    ``times_ms``: label -> one time per length (None where not measured); ``device`` names where
    they were measured (it goes into the title: timings mean nothing without it). On log-log axes
    a cost growing like length^k is a straight line of slope k.
    """
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    lengths = np.asarray(lengths)
    for label, times in times_ms.items():
        measured = [(n, t) for n, t in zip(lengths, times) if t is not None]
        if measured:
            ax.plot(*zip(*measured), marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="sequence length (time bins)", ylabel=ylabel,
           title=f"{title}\n(measured on {device})")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig
# ---------------------------------------------------------------- Notebook 4C: scaling and few-shot

def _curve_panels(curves: dict, xlabel: str, title: str, log_x: bool, baselines: dict | None = None):
    """One panel per metric (co-bps, velocity R^2); each curve its mean over seeds with SEM bars.
    ``curves``: {label: scaling.Curve}; ``baselines``: {label: {metric: value}} as horizontal lines."""
    metrics = list(next(iter(curves.values())).scores)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.6), squeeze=False,
                             constrained_layout=True)
    for ax, metric in zip(axes[0], metrics):
        for label, curve in curves.items():
            ax.errorbar(curve.x, curve.mean(metric), yerr=curve.sem(metric), marker="o", capsize=3,
                        label=f"{label} ({len(curve.seeds)} seed{'s' if len(curve.seeds) > 1 else ''})")
        for i, (label, values) in enumerate((baselines or {}).items()):
            if metric in values:
                ax.axhline(values[metric], color="grey", ls=(":", "--", "-.")[i % 3], lw=1, label=label)
        if log_x:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({x for c in curves.values() for x in c.x}))
            ax.xaxis.set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
        ax.set(xlabel=xlabel, ylabel=f"held-out session {metric.replace('R2', 'R$^2$')}",
               title=f"{metric.replace('R2', 'R$^2$')}")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def plot_scaling_curve(curves: dict, baselines: dict | None = None,
                       title: str = "a new session, core frozen: scores against pretraining data"):
    """Held-out session co-bps and velocity R^2 against the number of pretraining sessions (log 2
    axis), mean +- SEM over seeds. ``curves``: {label, e.g. the masking: scaling.Curve}."""
    return _curve_panels(curves, "sessions used for pretraining", title, log_x=True, baselines=baselines)


def plot_few_shot(pretrained, scratch, title: str = "few-shot: the held-out session's trials used"):
    """Held-out session scores against the number of its trials used: pretrained-and-adapted (core
    frozen) vs trained from scratch on the same trials (both scaling.Curve, mean +- SEM over seeds)."""
    return _curve_panels({"pretrained core + new read-in/out": pretrained, "from scratch": scratch},
                         "trials of the new session used for training", title, log_x=True)
# ---------------------------------------------------------------- Notebook 4A: multi-task masking

def plot_mtm_table(table, title: str = "every model on every metric", reference: str | None = "temporal"):
    """Heat map of a models x metrics table (a pandas DataFrame of bits/spike, mtm.Table1Result.table).

    Colours are the difference to the ``reference`` row (red: better than it, blue: worse), so
    "each scheme best on its own metric" shows as a red diagonal; the numbers are the scores themselves.
    """
    values = table.to_numpy(dtype=float)
    shown = values - values[list(table.index).index(reference)] if reference in table.index else values
    limit = float(np.nanmax(np.abs(shown))) or 1.0
    fig, ax = plt.subplots(figsize=(1.5 * values.shape[1] + 3.5, 0.45 * values.shape[0] + 1.8), constrained_layout=True)
    image = ax.imshow(shown, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(values.shape[1]), table.columns, rotation=20, ha="right")
    ax.set_yticks(range(values.shape[0]), table.index)
    ax.set(title=title, xlabel="metric (bits/spike; velocity: R²)", ylabel="trained with")
    fig.colorbar(image, ax=ax, label=f"difference to {reference}" if reference in table.index else "score")
    return fig


def plot_inter_region_truth(scores_by_area: dict, predictable: dict, title: str = "inter-region prediction per area"):
    """Bars of each area's inter-region bits/spike per model, areas that the ground truth says are
    predictable from the others in colour, the others grey (hatched).

    ``scores_by_area``: {model name: {area: bits/spike}}; ``predictable``: {area: bool}.
    """
    areas = list(predictable)
    fig, ax = plt.subplots(figsize=(1.3 * len(areas) + 3, 3.4), constrained_layout=True)
    width = 0.8 / max(1, len(scores_by_area))
    for k, (model, by_area) in enumerate(scores_by_area.items()):
        for i, area in enumerate(areas):
            ax.bar(i + (k - (len(scores_by_area) - 1) / 2) * width, by_area.get(area, np.nan), width,
                   color=plt.cm.tab10(k) if predictable[area] else "0.7", hatch=None if predictable[area] else "//",
                   edgecolor="0.3", label=model if i == 0 else None)
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(areas)), [f"{a}\n({'linked' if predictable[a] else 'alone'})" for a in areas])
    ax.set(title=title, xlabel="area predicted from all the others", ylabel="bits/spike")
    ax.legend(fontsize=8)
    return fig
