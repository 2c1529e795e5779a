"""Checks for Notebook 2's exercises (stitching sessions)."""
from __future__ import annotations

import copy

import torch

from .core import SECOND_DEVICE, ExerciseError, expect as _expect, expect_on_device, on_second_device, run_check


# --- Notebook 2, exercise 1: routing each trial through its own session's layers -------------

_ROUTING_ADVICE = ("Create every new tensor where the inputs live (device=spikes.device), or avoid creating "
                   "any: weight each session's output by (session == s)[:, None, None] and add them up.")


def _routing_case():
    """A small untrained NDT1-stitch (3 sessions, held-out outputs) and a mixed, unsorted batch."""
    from ..models.stitch import NDT1Stitch

    torch.manual_seed(0)
    model = NDT1Stitch([3, 5, 2], n_bins=6, n_outputs=[4, 7, 2], d_model=8, n_heads=2, dropout=0.0).eval()
    with torch.no_grad():  # an embedding big enough that forgetting it shows
        model.session_embedding.weight.normal_(0.0, 1.0)
    session = torch.tensor([1, 0, 2, 1, 0, 2, 0])
    generator = torch.Generator().manual_seed(1)
    spikes = torch.poisson(torch.full((7, 6, 5), 1.5), generator=generator)
    n_in = torch.tensor(model.n_inputs)[session]
    padding = torch.arange(5)[None, None, :] >= n_in[:, None, None]  # (B, 1, 5): columns past each session's units
    return model, spikes.masked_fill(padding, 0.0), session, padding


def _variant(model, spikes, session, read_in_of=None, read_out_of=None, embedding=True, route_out=True):
    """The stitched forward pass with one typical mistake: trials read in (out) through the layers of
    ``read_in_of`` (``read_out_of``) instead of their own session's, no embedding, or read-outs summed."""
    read_in_of = session if read_in_of is None else read_in_of
    read_out_of = session if read_out_of is None else read_out_of
    tokens = sum(layer(spikes[:, :, :layer.in_features]) * (read_in_of == s)[:, None, None]
                 for s, layer in enumerate(model.read_in))
    if embedding:
        tokens = tokens + model.session_embedding(session)[:, None, :]
    latents = model.core(tokens)
    width = max(layer.out_features for layer in model.read_out)
    return sum(torch.nn.functional.pad(layer(latents), (0, width - layer.out_features))
               * ((read_out_of == s)[:, None, None] if route_out else 1.0)
               for s, layer in enumerate(model.read_out))


def _close(a, b) -> bool:
    return tuple(a.shape) == tuple(b.shape) and torch.allclose(a, b, atol=1e-5, rtol=1e-4)


_PADDING_READ = ("padding columns are not ignored: a trial of session s has n_in[s] real units and the columns "
                 "after them are padding (the check fills them with 3s: your result changed). Give read_in[s] "
                 "only spikes[:, :, :n_in[s]], its first read_in[s].in_features columns.")


def _diagnose_routing(model, spikes, session, got, want, got_with_junk) -> str:
    """What a wrong answer most likely did, in words (one of the typical mistakes, else per session)."""
    n_sessions = len(model.n_inputs)
    everyone = lambda s: torch.full_like(session, s)
    mistakes = [(_variant(model, spikes, session, embedding=False),
                 "the session embedding is missing: add model.session_embedding(session) to every token "
                 "(one D-vector per trial, the same for all its bins) before the core.")]
    for s in range(n_sessions):
        mistakes.append((_variant(model, spikes, session, read_in_of=everyone(s)),
                         f"every trial went through read_in[{s}], the read-in of session {s}; each trial needs its "
                         "own session's read-in, read_in[session[i]] (weight read_in[s]'s output by session == s)."))
        mistakes.append((_variant(model, spikes, session, read_out_of=everyone(s)),
                         f"every trial went through read_out[{s}], the read-out of session {s}; each trial needs "
                         "its own session's read-out (weight read_out[s]'s output by session == s)."))
        mistakes.append((_variant(model, spikes, session, read_in_of=everyone(s), read_out_of=everyone(s)),
                         f"every trial went through session {s}'s layers (read_in[{s}] and read_out[{s}]); a batch "
                         "mixes sessions, so route each trial with its own id in `session`."))
    mistakes.append((_variant(model, spikes, session, route_out=False),
                     "the read-outs of all sessions were added up for every trial; keep only each trial's own "
                     "session's read-out (multiply by (session == s)[:, None, None])."))
    for wrong, message in mistakes:
        if _close(got, wrong):
            return message
    if not _close(got_with_junk, got):
        return _PADDING_READ
    own_units = model.output_mask(session)[:, None, :]  # (B, 1, max N_out)
    if _close(got * own_units, want):
        return ("the units each session really has are right, but the padded output columns are not 0: pad "
                "each read-out's output with zeros up to the widest session (torch.nn.functional.pad).")
    right = [bool(_close(got[i], want[i])) for i in range(len(session))]
    good = sorted({int(session[i]) for i in range(len(session)) if right[i]}
                  - {int(session[i]) for i in range(len(session)) if not right[i]})
    if good:
        bad = sorted(set(range(n_sessions)) - set(good))
        return (f"the trials of session(s) {good} come out right but those of session(s) {bad} do not: each "
                "trial must go through its own session's read_in[s] and read_out[s].")
    return ("the log-rates differ from the package's NDT1Stitch on the same weights. Steps: read_in[s] on "
            "spikes[:, :, :n_in[s]] for session s's trials, + session_embedding(session)[:, None, :], "
            "model.core(tokens), then read_out[s], zero-padded to the widest session.")


def check_stitch_forward(fn):
    """Notebook 2, exercise 1: ``fn(model, spikes, session) -> log-rates``, as ``NDT1Stitch`` computes them."""
    from ..models.stitch import stitch_forward

    def check(fn):
        model, spikes, session, padding = _routing_case()
        with torch.no_grad():
            got = fn(model, spikes.clone(), session.clone())
            want = model(spikes, session)
        _expect(torch.is_tensor(got), f"return the log-rates as a tensor, got {type(got).__name__}.")
        _expect(tuple(got.shape) == tuple(want.shape),
                f"expected log-rates shaped (trials, bins, widest session's outputs) = {tuple(want.shape)}, got "
                f"{tuple(got.shape)}. Pad each read-out's output with zeros up to the widest session.")
        with torch.no_grad():  # the same batch, with junk in the padding columns: it must not matter
            junk = fn(model, spikes.masked_fill(padding, 3.0), session.clone())
        _expect(torch.is_tensor(junk) and tuple(junk.shape) == tuple(want.shape), _PADDING_READ)
        if not _close(got.float(), want):
            with torch.no_grad():
                raise ExerciseError(_diagnose_routing(model, spikes, session, got.float(), want, junk.float()))
        _expect(_close(junk.float(), want), _PADDING_READ)
        meta_model = copy.deepcopy(model).to(SECOND_DEVICE)
        result = on_second_device(fn, (meta_model, spikes.to(SECOND_DEVICE), session.to(SECOND_DEVICE)),
                                  _ROUTING_ADVICE)
        expect_on_device(result, "the log-rates", _ROUTING_ADVICE)

    return run_check("Exercise 1 (stitch_forward)", fn, stitch_forward, check)


def check_swap_session_parts(fn):
    """Notebook 2, exercise 2: ``fn(model, source, target)`` copies source's read-in and embedding."""
    from ..models.stitch import NDT1Stitch, swap_session_parts

    def check(fn):
        torch.manual_seed(0)
        model = NDT1Stitch([3, 5], 4, d_model=8, n_heads=2)
        reference = copy.deepcopy(model)
        fn(model, 1, 0)
        swap_session_parts(reference, 1, 0)
        _expect(torch.equal(model.session_embedding.weight, reference.session_embedding.weight),
                "session 0's embedding should now equal session 1's (and session 1's must not change).")
        _expect(torch.equal(model.read_in[0].weight, reference.read_in[0].weight),
                "session 0's read-in weight should be session 1's first 3 columns (units laid on in order).")
        _expect(torch.equal(model.read_in[0].bias, reference.read_in[0].bias), "copy the read-in bias too.")
        _expect(torch.equal(model.read_in[1].weight, reference.read_in[1].weight), "leave the source session as it was.")
        on_gpu = copy.deepcopy(model).to(SECOND_DEVICE)
        advice = ("Change the parameters in place (.zero_(), .copy_(), slice assignment under torch.no_grad()) "
                  "instead of assigning new CPU tensors to them.")
        on_second_device(fn, (on_gpu, 1, 0), advice)
        for name, parameter in on_gpu.named_parameters():
            expect_on_device(parameter, f"after your function, the parameter {name}", advice)

    return run_check("Exercise 2 (swap_session_parts)", fn, swap_session_parts, check)
