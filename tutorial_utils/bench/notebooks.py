"""Benchmarks of Notebooks 1-3's pipelines, end to end, through the public API."""
from __future__ import annotations

import time

import torch

from .. import metrics
from ..runtime import get_device, get_profile, seed_everything


def bench_nb1(profile_name: str | None = None, seed: int = 0) -> dict:
    """Notebook 1's pipeline, end to end: Lorenz data, NDT1 training, held-out scores."""
    from ..batches import Batch
    from ..data import make_lorenz_dataset
    from ..models import NDT1
    from ..objectives import MaskedAutoencoding
    from ..training import predict_hidden_bins, train

    profile, device = get_profile(profile_name), get_device()
    seed_everything(seed)
    start = time.perf_counter()
    lorenz = make_lorenz_dataset(n_trials=profile.lorenz_trials, seed=seed)
    data_seconds = time.perf_counter() - start
    train_idx, val_idx, test_idx = (lorenz.trials(s) for s in ("train", "val", "test"))
    spikes = torch.as_tensor(lorenz.spikes)

    model = NDT1(lorenz.n_neurons, lorenz.n_bins, n_layers=2, dropout=0.1)
    history = train(model, Batch(spikes[train_idx]), Batch(spikes[val_idx]), MaskedAutoencoding(0.2),
                    epochs=profile.ndt1_epochs, patience=profile.ndt1_patience, batch_size=profile.batch_size,
                    lr=3e-3, seed=seed, device=device, desc=f"bench nb1 ({profile.name})")
    rates = predict_hidden_bins(model, spikes[test_idx]).exp()
    latents = predict_hidden_bins(model, spikes, method="latents").numpy()
    latent_r2, _ = metrics.latent_alignment_r2(latents[train_idx], lorenz.latents[train_idx],
                                               latents[test_idx], lorenz.latents[test_idx])
    return {
        "profile": profile.name, "device": str(device),
        "data": {"trials": int(spikes.shape[0]), "bins": lorenz.n_bins, "neurons": lorenz.n_neurons,
                 "test_trials": len(test_idx), "generate_seconds": round(data_seconds, 3)},
        "rate_r2": round(metrics.r2_score(rates, lorenz.rates[test_idx]), 4),
        "latent_alignment_r2": round(latent_r2, 4),
        "bits_per_spike_model": round(metrics.bits_per_spike(rates, spikes[test_idx]), 4),
        "bits_per_spike_true_rates": round(metrics.bits_per_spike(lorenz.rates[test_idx], spikes[test_idx]), 4),
        "train_seconds": round(history.seconds, 1), "steps": history.steps,
        "epochs_run": len(history.train_loss), "best_epoch": history.best_epoch,
    }


def bench_lorenz_lfads(profile_name: str | None = None, seeds=(0, 1)) -> dict:
    """``fit_ndt1`` as a user calls it, on the LFADS-like Lorenz benchmark (make_lorenz_config("lfads"):
    29 sparse neurons, 50 bins, 1248 training trials): rate R^2 against the true rates on the 156
    test trials, per seed and for the seeds' rates averaged. Issue 8's goal: >= 0.9 in the full profile.
    """
    import numpy as np

    from ..api import fit_ndt1
    from ..data.lorenz import make_lorenz_config
    from ..runtime import Profile

    profile = profile_name if isinstance(profile_name, Profile) else get_profile(profile_name)
    lorenz = make_lorenz_config("lfads", seed=0)
    train_idx, val_idx, test_idx = (lorenz.trials(s) for s in ("train", "val", "test"))
    per_seed, rates, seconds = [], [], []
    for seed in seeds:
        start = time.perf_counter()
        fitted = fit_ndt1(lorenz.spikes[train_idx], lorenz.spikes[val_idx], profile=profile, seed=seed)
        seconds.append(round(time.perf_counter() - start, 1))
        rates.append(fitted.predict_rates(lorenz.spikes[test_idx]))
        per_seed.append(round(metrics.r2_score(rates[-1], lorenz.rates[test_idx]), 4))
    result = {
        "profile": profile.name, "device": str(get_device()), "seeds": list(seeds),
        "rate_r2_per_seed": per_seed,
        "rate_r2_seeds_averaged": round(metrics.r2_score(np.mean(rates, axis=0), lorenz.rates[test_idx]), 4),
        "fit_seconds_per_seed": seconds,
    }
    print(f"fit_ndt1 ({profile.name}) on Lorenz 'lfads': rate R^2 {per_seed} per seed, "
          f"{result['rate_r2_seeds_averaged']} with the seeds' rates averaged; {seconds} s")
    return result


MAZE_BIN_MS = 20  # Notebooks 2-3 bin mc_maze at 20 ms (at real firing rates 5 ms bins are too sparse to learn from quickly)


def bench_nb2(profile_name: str | None = None, seed: int = 0) -> dict:
    """Notebook 2's mc_maze measurements: co-bps alone vs stitched, area decoding, the swap."""
    import copy

    from ..api import fit_ndt1_stitch
    from ..data import evaluate_rates, load_mc_maze
    from ..models import swap_session_parts

    profile = get_profile(profile_name)
    names = ["mc_maze_small", "mc_maze_medium"] + (["mc_maze_large"] if profile.name == "full" else [])
    sessions = [load_mc_maze(name, bin_ms=MAZE_BIN_MS) for name in names]
    small = sessions[0]

    def fit(chosen):
        start = time.perf_counter()
        fitted = fit_ndt1_stitch([s.all_spikes("train") for s in chosen], [s.all_spikes("val") for s in chosen],
                                 n_heldout=[s.heldout_spikes.shape[2] for s in chosen], profile=profile, seed=seed)
        return fitted, round(time.perf_counter() - start, 1)

    def co_bps(fitted):
        rates = fitted.predict_rates(small.heldin_spikes, 0)
        n_in = small.heldin_spikes.shape[2]
        return round(evaluate_rates(small, rates[..., :n_in], rates[..., n_in:])["co-bps"], 4)

    single, single_seconds = fit([small])
    stitched, stitched_seconds = fit(sessions)
    read_out_accuracy, chance = metrics.area_decoding_accuracy(single.model.unit_embeddings(0), small.all_areas)
    read_in_accuracy, _ = metrics.area_decoding_accuracy(single.model.unit_embeddings(0, "read_in"), small.heldin_area)
    swapped = copy.deepcopy(stitched)
    swap_session_parts(swapped.model, source=1, target=0)
    refit = copy.deepcopy(swapped)
    refit.refit_read_in(0, small.all_spikes("train"), small.all_spikes("val"), epochs=profile.stitch_epochs // 2,
                        batch_size=profile.stitch_batch_size)
    return {
        "profile": profile.name, "device": str(get_device()), "synthetic": small.is_synthetic, "sessions": names,
        "co_bps_small_alone": co_bps(single), "co_bps_small_stitched": co_bps(stitched),
        "co_bps_small_after_swap": co_bps(swapped), "co_bps_small_after_read_in_refit": co_bps(refit),
        "area_accuracy_read_out": round(read_out_accuracy, 3), "area_accuracy_read_in": round(read_in_accuracy, 3),
        "area_chance": round(chance, 3),
        "train_seconds_alone": single_seconds, "train_seconds_stitched": stitched_seconds,
        "epochs_alone": len(single.history.train_loss), "epochs_stitched": len(stitched.history.train_loss),
    }


def bench_nb3(profile_name: str | None = None, seed: int = 0) -> dict:
    """Notebook 3's decoders on mc_maze_small's test (NLB val) trials: R^2 and seconds for each.

    Pretrained stitched models come from the data cache when Notebook 2/3 saved them (the result
    says which were loaded and which were trained, with their times)."""
    from .. import decoding
    from ..api import fit_ndt1_stitch, load_or_fit, model_cache_path
    from ..data import load_mc_maze

    profile, device = get_profile(profile_name), get_device()
    seed_everything(seed)
    names = ["mc_maze_small", "mc_maze_medium"] + (["mc_maze_large"] if profile.name == "full" else [])
    sessions = [load_mc_maze(name, bin_ms=MAZE_BIN_MS) for name in names]
    small = sessions[0]
    train_trials, test_trials = small.trials("train"), small.trials("val")
    velocity, bin_ms = small.hand_vel, small.bin_ms
    pretraining, rows = {}, []

    def timed(call):
        start = time.perf_counter()
        value = call()
        return value, round(time.perf_counter() - start, 1)

    def pretrained(tag, chosen):
        path = model_cache_path(tag, small.is_synthetic, profile)
        fit = lambda: fit_ndt1_stitch([s.all_spikes("train") for s in chosen], [s.all_spikes("val") for s in chosen],  # noqa: E731
                                      n_heldout=[s.heldout_spikes.shape[2] for s in chosen], profile=profile,
                                      seed=seed, progress=False)
        (fitted, loaded), seconds = timed(lambda: load_or_fit(path, fit))
        pretraining[tag] = "loaded from cache" if loaded else f"trained in {seconds} s"
        return fitted

    stitched, alone = pretrained("nb2_stitched", sessions), pretrained("nb2_small_alone", [small])
    without = pretrained("nb3_pretrained_without_small", sessions[1:])
    curves, lag_seconds = timed(lambda: decoding.LagCurve.mean([
        decoding.lag_search(decoding.smooth_counts(s.heldin_spikes[s.trials("train")], 2.0),
                            s.hand_vel[s.trials("train")], bin_ms=bin_ms) for s in sessions]))
    lag = curves.best_lag

    def ridge_row(name, model, index, causal=False, extra_seconds=0.0):
        def fit_and_score():
            latents = decoding.stitch_latents(model, small.heldin_spikes, index, causal=causal)
            ridge = decoding.RidgeDecoder.fit(latents[train_trials], velocity[train_trials], lag)
            return ridge.score(latents[test_trials], velocity[test_trials])
        r2, seconds = timed(fit_and_score)
        rows.append({"decoder": name, "causal": bool(causal), "r2": round(r2, 4), "seconds": seconds + extra_seconds})

    ridge_row("frozen stitched + ridge", stitched.model, 0)
    ridge_row("frozen stitched + ridge, causal mask", stitched.model, 0, causal=True)
    ridge_row("trained on small alone + ridge", alone.model, 0)
    adapted = without.add_session(small.heldin_spikes.shape[2], small.all_spikes().shape[2])
    _, adapt_seconds = timed(lambda: adapted.refit_read_in(
        len(sessions) - 1, small.all_spikes("train"), small.all_spikes("val"), epochs=profile.stitch_epochs // 2,
        batch_size=profile.stitch_batch_size, read_out=True, progress=False))
    ridge_row("never saw small: read-in adapted + ridge", adapted.model, len(sessions) - 1, extra_seconds=adapt_seconds)

    fit_trials, stop_trials = train_trials[:60], train_trials[60:]
    all_units = small.all_spikes()
    for weight in (0.5, 0.0):
        decoder, seconds = timed(lambda: decoding.fit_causal_decoder(
            all_units[fit_trials], velocity[fit_trials], all_units[stop_trials], velocity[stop_trials],
            lag_bins=lag, pretrained=stitched.model, session=0, n_heldout=small.heldout_spikes.shape[2],
            poisson_weight=weight, epochs=profile.decoder_epochs, seed=seed, device=device, progress=False))
        rows.append({"decoder": f"causal end to end (Poisson weight {weight})", "causal": True,
                     "r2": round(decoder.score(small.heldin_spikes[test_trials], velocity[test_trials]), 4),
                     "seconds": seconds})
    wiener, seconds = timed(lambda: decoding.WienerFilter.fit(small.heldin_spikes[train_trials], velocity[train_trials],
                                                             lag, history_bins=profile.wiener_history_bins))
    rows.append({"decoder": f"Wiener filter (k = {wiener.history_bins} bins)", "causal": True,
                 "r2": round(wiener.score(small.heldin_spikes[test_trials], velocity[test_trials]), 4),
                 "seconds": seconds})

    rows.sort(key=lambda row: -row["r2"])
    print(f"\n{small.label}, {profile.name} profile, {len(test_trials)} test trials, lag {lag * bin_ms} ms "
          f"(lag search {lag_seconds} s)")
    print(f"{'decoder':45s} {'causal':>6s} {'R^2':>7s} {'fit s':>7s}")
    for row in rows:
        print(f"{row['decoder']:45s} {'yes' if row['causal'] else 'no':>6s} {row['r2']:7.3f} {row['seconds']:7.1f}")
    return {"profile": profile.name, "device": str(device), "synthetic": small.is_synthetic, "sessions": names,
            "lag_ms": lag * bin_ms, "lag_search_seconds": lag_seconds, "pretrained_models": pretraining,
            "decoders": rows}
