"""The selective scan (three implementations) and the Mamba backbone built on it.

* The sequential reference matches a case computed by hand; the parallel scan equals it (values
  and gradients with respect to every input) on random inputs, lengths that do not fill the last
  chunk, every option, stiff and very long sequences; its hand-written backward to float64 precision,
  keeping two (b, d, l, n) tensors, also on the route a GPU takes (run here on the CPU).
* Causality, float32 inside bfloat16 autocast, a bfloat16-autocast training step, ``meta`` tensors.
* mamba_ssm.Mamba's parameter names, shapes and initialisation; with CUDA and mamba-ssm
  installed, the scan and a whole block against mamba-ssm itself (skipped otherwise, saying why).
* Bad input: clear errors.
"""
import copy
import math

import pytest
import torch

from tutorial_utils.models.mamba import MambaBackbone, MambaBlock, MambaConfig
from tutorial_utils.models.selective_scan import (mamba_ssm_scan, selective_scan, selective_scan_parallel,
                                                  selective_scan_sequential)

META = torch.device("meta")


def _inputs(b=2, d=5, n=4, l=37, seed=0, dtype=torch.float32, device="cpu", requires_grad=False):
    """Random scan inputs in Mamba's regime: A < 0, delta around softplus(-1)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)

    tensors = dict(u=r(b, d, l), delta=r(b, d, l, scale=0.5, shift=-1.0),
                   A=-torch.exp(r(d, n, scale=0.5, shift=0.5)), B=r(b, n, l), C=r(b, n, l),
                   D=r(d), z=r(b, d, l), delta_bias=r(d, scale=0.3))
    return {k: v.to(device).requires_grad_(requires_grad) for k, v in tensors.items()}


# --- the reference is right ---------------------------------------------------------------------

def test_sequential_scan_matches_a_case_computed_by_hand():
    # one sequence, one channel, one state: h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t; y_t = C_t h_t
    u, delta, B, C = [1.0, -1.0, 2.0], [1.0, 0.5, 2.0], [1.0, 2.0, 3.0], [1.0, 1.0, 2.0]
    h1 = 1.0 * 1.0 * 1.0
    h2 = math.exp(-0.5) * h1 + 0.5 * 2.0 * -1.0
    h3 = math.exp(-2.0) * h2 + 2.0 * 3.0 * 2.0
    want = torch.tensor([[[1.0 * h1, 1.0 * h2, 2.0 * h3]]], dtype=torch.float64)

    def t(values):
        return torch.tensor(values, dtype=torch.float64).reshape(1, 1, 3)

    A = -torch.ones(1, 1, dtype=torch.float64)
    for scan in (selective_scan_sequential, selective_scan_parallel):
        got, last = scan(t(u), t(delta), A, t(B), t(C), return_last_state=True)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(last, torch.tensor([[[h3]]], dtype=torch.float64))
        # D adds D * u; z gates by silu(z); delta_bias + softplus give the step sizes
        with_d = scan(t(u), t(delta), A, t(B), t(C), D=torch.tensor([0.5], dtype=torch.float64),
                      z=t([0.0, 1.0, -1.0]))
        torch.testing.assert_close(with_d, (want + 0.5 * t(u)) * torch.nn.functional.silu(t([0.0, 1.0, -1.0])))
    raw = t([0.3, -0.2, 1.0])
    torch.testing.assert_close(
        selective_scan_sequential(t(u), raw, A, t(B), t(C), delta_bias=torch.tensor([0.1], dtype=torch.float64),
                                  delta_softplus=True),
        selective_scan_sequential(t(u), torch.nn.functional.softplus(raw + 0.1), A, t(B), t(C)))


# --- parallel == sequential ---------------------------------------------------------------------

OPTIONS = {
    "plain": dict(),
    "D": dict(D=True),
    "z": dict(z=True),
    "delta_bias+softplus": dict(delta_bias=True, delta_softplus=True),
    "everything": dict(D=True, z=True, delta_bias=True, delta_softplus=True),
}


def _call(scan, tensors, options, **kwargs):
    names = ("D", "z", "delta_bias")
    extra = {k: tensors[k] for k in names if options.get(k)}
    return scan(tensors["u"], tensors["delta"], tensors["A"], tensors["B"], tensors["C"], **extra,
                delta_softplus=options.get("delta_softplus", False), return_last_state=True, **kwargs)


@pytest.mark.parametrize("length,chunk_size", [(1, 8), (7, 8), (16, 8), (37, 8), (37, 64), (130, 16)])
@pytest.mark.parametrize("option", OPTIONS)
def test_parallel_scan_equals_sequential_values_and_gradients(length, chunk_size, option):
    options = OPTIONS[option]
    results = []
    for scan, kwargs in ((selective_scan_sequential, {}), (selective_scan_parallel, {"chunk_size": chunk_size})):
        tensors = _inputs(l=length, seed=length, requires_grad=True)
        if not options.get("delta_softplus"):  # keep the raw steps positive, as softplus would
            with torch.no_grad():
                tensors["delta"].copy_(torch.nn.functional.softplus(tensors["delta"]))
        out, last = _call(scan, tensors, options, **kwargs)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        ((out * weights).sum() + last.sum()).backward()
        used = ("u", "delta", "A", "B", "C") + tuple(k for k in ("D", "z", "delta_bias") if options.get(k))
        results.append((out, last, {k: tensors[k].grad for k in used}))
    (out_seq, last_seq, grads_seq), (out_par, last_par, grads_par) = results
    torch.testing.assert_close(out_par, out_seq, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last_par, last_seq, rtol=1e-5, atol=1e-5)
    for name in grads_seq:
        torch.testing.assert_close(grads_par[name], grads_seq[name], rtol=1e-4, atol=1e-4, msg=f"grad wrt {name}")


def test_scanning_the_channels_in_groups_changes_nothing():
    tensors = _inputs(d=7, l=50, requires_grad=True)
    whole = _call(selective_scan_parallel, tensors, OPTIONS["everything"])
    grads = torch.autograd.grad(whole[0].sum() + whole[1].sum(), list(tensors.values()))
    grouped = _call(selective_scan_parallel, tensors, OPTIONS["everything"], block_elements=3 * 2 * 50 * 4)  # 3 + 3 + 1
    torch.testing.assert_close(grouped, whole)
    for name, g, h in zip(tensors, grads, torch.autograd.grad(grouped[0].sum() + grouped[1].sum(), list(tensors.values()))):
        torch.testing.assert_close(h, g, msg=f"grad wrt {name}")


def test_parallel_scan_gradients_are_exact_in_float64():
    tensors = _inputs(b=1, d=2, n=3, l=11, dtype=torch.float64, requires_grad=True)

    def scan(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan_parallel(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True, chunk_size=4)

    assert torch.autograd.gradcheck(scan, tuple(tensors.values()))


def test_parallel_scan_is_stable_on_stiff_and_on_very_long_sequences():
    for delta_value, length in ((8.0, 500), (0.01, 5000)):  # forget at once / remember for thousands of steps
        tensors = _inputs(b=1, d=3, n=16, l=length)
        tensors["A"] = -torch.arange(1.0, 17.0).repeat(3, 1)  # Mamba's initial A, up to -16
        delta = torch.full((1, 3, length), delta_value)
        want = selective_scan_sequential(tensors["u"], delta, tensors["A"], tensors["B"], tensors["C"])
        got = selective_scan_parallel(tensors["u"], delta, tensors["A"], tensors["B"], tensors["C"])
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_hand_written_backward_equals_autograd_through_the_loop_in_float64():
    # several chunks, the last one partial, every option, gradients of the output and the last state
    tensors = _inputs(b=2, d=3, n=4, l=29, seed=3, dtype=torch.float64, requires_grad=True)
    g = torch.Generator().manual_seed(4)
    out_weights, last_weights = torch.randn(2, 3, 29, generator=g, dtype=torch.float64), torch.randn(
        2, 3, 4, generator=g, dtype=torch.float64)
    grads = []
    for scan, kwargs in ((selective_scan_sequential, {}), (selective_scan_parallel, {"chunk_size": 8})):
        out, last = _call(scan, tensors, OPTIONS["everything"], **kwargs)
        loss = (out * out_weights).sum() + (last * last_weights).sum()
        grads.append(dict(zip(tensors, torch.autograd.grad(loss, list(tensors.values())))))
    for name in tensors:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-10, atol=1e-12, msg=f"grad wrt {name}")


def test_gradients_stay_accurate_when_the_decay_spans_many_orders_of_magnitude_within_a_chunk():
    # delta |A| up to 4 per step: chunks of 16 steps whose decays run from 1 down to ~exp(-50). The
    # backward sums over later steps must not be taken as (sum over all) - (sum over earlier ones):
    # the small ones would be lost in the difference of large numbers, then divided by a tiny decay.
    length = 200
    g = torch.Generator().manual_seed(0)
    delta = 0.2 + 0.05 * torch.rand(1, 3, length, generator=g)
    tensors = _inputs(b=1, d=3, n=16, l=length, requires_grad=True)
    tensors["A"] = -torch.arange(1.0, 17.0).repeat(3, 1).requires_grad_()
    tensors["delta"] = delta.requires_grad_()
    grads = []
    for scan in (selective_scan_sequential, selective_scan_parallel):
        out, last = _call(scan, tensors, OPTIONS["plain"])
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        used = [tensors[k] for k in ("u", "delta", "A", "B", "C")]
        grads.append(torch.autograd.grad((out * weights).sum() + last.sum(), used))
    for name, par, seq in zip(("u", "delta", "A", "B", "C"), grads[1], grads[0]):
        assert torch.isfinite(par).all(), name
        torch.testing.assert_close(par, seq, rtol=1e-4, atol=1e-4 * seq.abs().max().item(), msg=f"grad wrt {name}")


def test_parallel_scan_keeps_only_two_full_size_tensors_for_backward():
    # Autograd through the forward pass would keep about a dozen (b, d, l, n) intermediates; the
    # hand-written backward needs E and h only (plus the small inputs).
    tensors = _inputs(b=2, d=8, n=16, l=256, requires_grad=True)
    saved = []

    def keep(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        _call(selective_scan_parallel, tensors, OPTIONS["everything"], chunk_size=64)
    full_size = 2 * 8 * 256 * 16  # (b, d, l, n); padded to whole chunks, a little more
    assert len([numel for numel in saved if numel >= full_size]) == 2, sorted(saved)
    assert sum(saved) < 3 * full_size, sum(saved) / full_size  # the rest: (b, d, l)-size and smaller


def test_chunk_cumsum_by_loop_equals_torch_cumsum_both_ways():
    from tutorial_utils.models.parallel_scan import _cumsum_chunks

    x = torch.randn(2, 3, 4, 7, 5, dtype=torch.float64)
    for backwards, want in ((False, x.cumsum(3)), (True, x.flip(3).cumsum(3).flip(3))):
        for loop in (True, False):  # False: what a GPU runs
            torch.testing.assert_close(_cumsum_chunks(x.clone(), backwards=backwards, loop=loop), want)


@pytest.mark.parametrize("reverse", [False, True])
def test_both_ways_over_the_chunks_equal_a_loop_also_in_blocks_and_from_a_given_state(reverse):
    from tutorial_utils.models.parallel_scan import _scan_over_chunks, _scan_over_chunks_at_once

    g = torch.Generator().manual_seed(3)
    log_decay = -3 * torch.rand(2, 3, 11, 4, generator=g, dtype=torch.float64)   # (b, d, c, n)
    value = torch.randn(2, 3, 11, 4, generator=g, dtype=torch.float64)
    for initial in (torch.randn(2, 3, 4, generator=g, dtype=torch.float64), None):
        state, want = torch.zeros(2, 3, 4, dtype=torch.float64) if initial is None else initial, {}
        for c in (reversed(range(11)) if reverse else range(11)):
            want[c] = state                   # the state chunk c receives
            state = log_decay[:, :, c].exp() * state + value[:, :, c]
        want = torch.stack([want[c] for c in range(11)], 2)
        results = [_scan_over_chunks(log_decay, value, initial, reverse, at_once) for at_once in (False, True)]
        results += [_scan_over_chunks_at_once(log_decay, value, initial, reverse, block) for block in (4, 1)]
        for received, far_end in results:
            torch.testing.assert_close(received, want, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(far_end, state, rtol=1e-12, atol=1e-12)


def test_the_gpu_route_of_the_parallel_scan_gives_the_same_values_and_gradients(monkeypatch):
    from tutorial_utils.models import parallel_scan

    tensors = _inputs(l=45, seed=5, dtype=torch.float64, requires_grad=True)
    results = []
    # on_cpu False: cumsum kernels, plain sums (what a GPU runs), here on the CPU; a GPU's route for
    # small problems (launch-bound: chunks linked at once) and for big ones (size limit 0)
    for on_cpu, launch_bound_size in ((True, None), (False, parallel_scan._LAUNCH_BOUND_SIZE), (False, 0)):
        monkeypatch.setattr(parallel_scan, "_cpu_route", lambda x, on_cpu=on_cpu: on_cpu)
        if launch_bound_size is not None:
            monkeypatch.setattr(parallel_scan, "_LAUNCH_BOUND_SIZE", launch_bound_size)
        out, last = _call(selective_scan_parallel, tensors, OPTIONS["everything"], chunk_size=8)
        results.append((out, last, torch.autograd.grad(out.sum() + 2 * last.sum(), list(tensors.values()))))
    for other in results[1:]:
        torch.testing.assert_close(other[:2], results[0][:2], rtol=1e-12, atol=1e-12)
        for name, g, h in zip(tensors, results[0][2], other[2]):
            torch.testing.assert_close(h, g, rtol=1e-10, atol=1e-12, msg=f"grad wrt {name}")


def test_gradient_of_the_last_state_alone():
    # only the last state is used: backward gets no gradient for y (None, not zeros)
    tensors = _inputs(l=30, seed=2, dtype=torch.float64, requires_grad=True)
    grads = [torch.autograd.grad(scan(*tensors.values(), return_last_state=True)[1].square().sum(),
                                 list(tensors.values()), allow_unused=True)
             for scan in (selective_scan_sequential, selective_scan_parallel)]
    for name, g, h in zip(tensors, *grads):
        if g is None:
            assert h is None or not h.any(), name
        else:
            torch.testing.assert_close(h, g, rtol=1e-10, atol=1e-12, msg=f"grad wrt {name}")


def test_gradients_are_the_same_when_backward_runs_inside_bfloat16_autocast():
    tensors = _inputs(l=60, requires_grad=True)
    results = []
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out, last = _call(selective_scan_parallel, tensors, OPTIONS["everything"], chunk_size=16)
            grads = torch.autograd.grad(out.sum() + last.sum(), list(tensors.values()))
        results.append(grads)
    for name, g, h in zip(tensors, *results):
        assert h.dtype == torch.float32, name
        torch.testing.assert_close(h, g, rtol=1e-6, atol=1e-6, msg=f"grad wrt {name}")


def test_parallel_scan_backward_runs_on_meta_tensors():
    tensors = _inputs(l=20, device=META, requires_grad=True)
    out, last = _call(selective_scan_parallel, tensors, OPTIONS["everything"], chunk_size=8)
    grads = torch.autograd.grad(out.sum() + last.sum(), list(tensors.values()))
    for (name, tensor), grad in zip(tensors.items(), grads):
        assert grad.device == META and grad.shape == tensor.shape, name


def test_the_scan_is_causal():
    tensors = _inputs(l=40)
    changed = {k: v.clone() for k, v in tensors.items()}
    for name in ("u", "delta", "z"):
        changed[name][..., 25:] = torch.randn_like(changed[name][..., 25:])
    for name in ("B", "C"):
        changed[name][..., 25:] += 3.0
    # The parallel scan is causal up to rounding: its chunk length depends on the steepest step of
    # the whole sequence (_chunk_length), so a changed future may regroup the same sums.
    for scan, atol in ((selective_scan_sequential, 0.0), (selective_scan_parallel, 1e-5)):
        before, _ = _call(scan, tensors, OPTIONS["everything"])
        after, _ = _call(scan, changed, OPTIONS["everything"])
        torch.testing.assert_close(after[..., :25], before[..., :25], rtol=0, atol=atol)
        assert not torch.allclose(after[..., 25:], before[..., 25:])


def test_the_recurrence_runs_in_float32_under_bfloat16_autocast():
    tensors = {k: v.to(torch.bfloat16) for k, v in _inputs(l=300).items()}
    want = _call(selective_scan_parallel, {k: v.float() for k, v in tensors.items()}, OPTIONS["everything"])[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for scan in (selective_scan_sequential, selective_scan_parallel):
            got, last = _call(scan, tensors, OPTIONS["everything"])
            assert got.dtype == torch.bfloat16 and last.dtype == torch.float32  # as mamba-ssm returns them
            # only the final rounding to bfloat16 differs
            torch.testing.assert_close(got.float(), want, rtol=1e-2, atol=1e-2)


def test_scans_run_on_meta_tensors():
    tensors = _inputs(l=20, device=META)
    for scan in (selective_scan_sequential, selective_scan_parallel, selective_scan):
        out, last = _call(scan, tensors, OPTIONS["everything"])
        assert out.device == META and tuple(out.shape) == (2, 5, 20) and tuple(last.shape) == (2, 5, 4)


def test_dispatch_uses_the_parallel_scan_without_cuda_and_says_what_the_kernel_needs():
    tensors = _inputs(l=10)
    torch.testing.assert_close(_call(selective_scan, tensors, OPTIONS["everything"]),
                               _call(selective_scan_parallel, tensors, OPTIONS["everything"]))
    with pytest.raises(RuntimeError, match="needs CUDA tensors and mamba-ssm"):
        _call(selective_scan, tensors, OPTIONS["plain"], implementation="kernel")
    with pytest.raises(ValueError, match="implementation must be one of"):
        _call(selective_scan, tensors, OPTIONS["plain"], implementation="fast")


@pytest.mark.parametrize("name,shape,message", [
    ("u", (2, 5), r"u must be \(batch, channels d, length l\)"),
    ("delta", (2, 5, 36), r"delta must have u's shape"),
    ("A", (4, 5), r"A must be \(d, n\) = \(5, d_state\)"),
    ("B", (2, 37, 4), r"B must be \(b, n, l\) = \(2, 4, 37\)"),
    ("C", (2, 3, 37), r"C must be \(b, n, l\)"),
    ("D", (5, 1), r"D must be \(d,\)"),
    ("z", (2, 37, 5), r"z must have u's shape"),
    ("delta_bias", (4,), r"delta_bias must be \(d,\)"),
])
def test_bad_shapes_are_named(name, shape, message):
    tensors = _inputs()
    tensors[name] = torch.zeros(shape)
    for scan in (selective_scan_sequential, selective_scan_parallel, selective_scan):
        with pytest.raises(ValueError, match=message):
            _call(scan, tensors, OPTIONS["everything"])
    with pytest.raises(ValueError, match="chunk_size must be a positive"):
        _call(selective_scan_parallel, _inputs(), OPTIONS["plain"], chunk_size=0)


# --- the Mamba block and backbone ---------------------------------------------------------------

def test_block_has_mamba_ssm_parameter_names_shapes_and_initialisation():
    torch.manual_seed(0)
    block = MambaBlock(d_model=40, d_state=8, d_conv=3, expand=2)  # E = 80, R = ceil(40 / 16) = 3
    shapes = {name: tuple(p.shape) for name, p in block.named_parameters()}
    assert shapes == {"in_proj.weight": (160, 40), "conv1d.weight": (80, 1, 3), "conv1d.bias": (80,),
                      "x_proj.weight": (19, 80), "dt_proj.weight": (80, 3), "dt_proj.bias": (80,),
                      "A_log": (80, 8), "D": (80,), "out_proj.weight": (40, 80)}
    torch.testing.assert_close(block.A_log, torch.log(torch.arange(1.0, 9.0)).repeat(80, 1))  # S4D-real
    assert torch.equal(block.D, torch.ones(80))
    dt = torch.nn.functional.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001 and dt.std() > 0.01  # spread over [dt_min, dt_max]
    assert block.dt_proj.weight.abs().max() <= 3 ** -0.5
    assert block.dt_proj.bias._no_reinit and block.A_log._no_weight_decay and block.D._no_weight_decay


def _backbone(**overrides):
    torch.manual_seed(0)
    return MambaBackbone(MambaConfig(**{"d_model": 16, "n_layers": 2, "d_state": 4, **overrides}))


def test_backbone_maps_tokens_to_tokens_and_is_causal():
    backbone = _backbone().eval()
    tokens = torch.randn(3, 50, 16)
    out = backbone(tokens)
    assert out.shape == tokens.shape and backbone.d_model == 16 and torch.isfinite(out).all()
    changed = tokens.clone()
    changed[:, 30:] = torch.randn(3, 20, 16)
    after = backbone(changed)
    torch.testing.assert_close(after[:, :30], out[:, :30], rtol=0, atol=1e-5)
    assert not torch.allclose(after[:, 30:], out[:, 30:])
    torch.testing.assert_close(backbone(tokens, causal=True), out)  # always causal


def test_bidirectional_backbone_sees_the_future_unless_asked_to_be_causal():
    backbone = _backbone(bidirectional=True).eval()
    tokens = torch.randn(2, 30, 16)
    changed = tokens.clone()
    changed[:, 20:] += 1.0
    assert not torch.allclose(backbone(changed)[:, :20], backbone(tokens)[:, :20])
    torch.testing.assert_close(backbone(changed, causal=True)[:, :20], backbone(tokens, causal=True)[:, :20])


def test_block_scans_agree_and_backbone_round_trips_through_its_config():
    backbone = _backbone().eval()
    tokens = torch.randn(2, 70, 16)
    sequential = MambaBackbone.from_config({**backbone.config_dict(), "scan": "sequential"})
    sequential.load_state_dict(backbone.state_dict())
    torch.testing.assert_close(sequential.eval()(tokens), backbone(tokens), rtol=1e-4, atol=1e-5)
    assert MambaBackbone.from_config(backbone.config).config == backbone.config


def test_backbone_training_step_under_cpu_bfloat16_autocast():
    backbone = _backbone(dropout=0.1)
    head = torch.nn.Linear(16, 3)
    optimiser = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=1e-2)
    before = copy.deepcopy(backbone.state_dict())
    tokens, target = torch.randn(4, 40, 16), torch.randn(4, 40, 3)
    seen = []
    backbone.layers[0].mixer.in_proj.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.mse_loss(head(backbone(tokens)).float(), target)
    loss.backward()
    optimiser.step()
    assert seen == [torch.bfloat16] and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in backbone.parameters())
    assert all(not torch.equal(before[k], v) for k, v in backbone.state_dict().items())  # every parameter learns


def test_backbone_runs_on_meta_tensors():
    backbone = _backbone(bidirectional=True).to(META)
    out = backbone(torch.randn(2, 12, 16, device=META))
    assert out.device == META and tuple(out.shape) == (2, 12, 16)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.device == META for p in backbone.parameters())


def test_backbone_and_config_reject_bad_input():
    backbone = _backbone()
    with pytest.raises(ValueError, match=r"tokens of shape \(batch, time, d_model=16\), got \(2, 10, 8\)"):
        backbone(torch.randn(2, 10, 8))
    with pytest.raises(ValueError, match=r"got \(10, 16\)"):
        backbone(torch.randn(10, 16))
    with pytest.raises(ValueError, match="not an attention mask"):
        backbone(torch.randn(2, 10, 16), causal=torch.ones(10, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="block must be one of"):
        MambaConfig(d_model=8, block="cuda")
    with pytest.raises(ValueError, match="scan must be one of"):
        MambaConfig(d_model=8, scan="fast")
    with pytest.raises(ValueError, match="d_model and n_layers must be positive"):
        MambaConfig(d_model=8, n_layers=0)


# --- against mamba-ssm itself (CUDA only) -------------------------------------------------------

def _mamba_ssm_missing() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA GPU (mamba-ssm's kernels are CUDA-only)"
    if mamba_ssm_scan() is None:
        return "needs mamba-ssm installed (see README.md, 'mamba-ssm on a CUDA machine')"
    return None


needs_mamba_ssm = pytest.mark.skipif(_mamba_ssm_missing() is not None, reason=_mamba_ssm_missing() or "")
# mamba-ssm's own tests compare its kernel with its reference at these float32 tolerances
RTOL, ATOL = 6e-4, 2e-3


@needs_mamba_ssm
@pytest.mark.parametrize("length", [64, 1000])
def test_parallel_scan_matches_the_mamba_ssm_kernel(length):
    kernel = mamba_ssm_scan()
    tensors = _inputs(b=2, d=24, n=16, l=length, device="cuda", requires_grad=True)
    ours = _call(selective_scan_parallel, tensors, OPTIONS["everything"])
    grads = torch.autograd.grad(ours[0].sum(), list(tensors.values()))
    theirs = _call(kernel, tensors, OPTIONS["everything"])
    their_grads = torch.autograd.grad(theirs[0].sum(), list(tensors.values()))
    torch.testing.assert_close(ours[0], theirs[0], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(ours[1], theirs[1], rtol=RTOL, atol=ATOL)
    for name, g, h in zip(tensors, grads, their_grads):
        # A, D, delta_bias, B and C are shared by many terms: their gradients are sums over the batch,
        # the length or the channels, so their absolute rounding grows with the gradient's size
        scale = 1.0 if name in ("u", "delta", "z") else max(1.0, float(h.abs().max()))
        torch.testing.assert_close(g, h, rtol=RTOL, atol=ATOL * scale, msg=f"grad wrt {name}")


@needs_mamba_ssm
def test_block_matches_mamba_ssm_Mamba_with_the_same_state_dict():
    from mamba_ssm import Mamba

    torch.manual_seed(0)
    ours = MambaBlock(d_model=32, d_state=16, scan="parallel").cuda()
    theirs = Mamba(d_model=32, d_state=16).cuda()
    theirs.load_state_dict(ours.state_dict())  # same names and shapes, both ways
    ours.load_state_dict(theirs.state_dict())
    tokens = torch.randn(2, 200, 32, device="cuda")
    torch.testing.assert_close(ours(tokens), theirs(tokens), rtol=RTOL, atol=ATOL)
    backbone = MambaBackbone(MambaConfig(d_model=32, block="mamba_ssm")).cuda()
    mine = MambaBackbone(MambaConfig(d_model=32, scan="parallel")).cuda()
    mine.load_state_dict(backbone.state_dict())
    torch.testing.assert_close(mine(tokens), backbone(tokens), rtol=RTOL, atol=ATOL)


# --- the exercise check (Notebook 4B) -----------------------------------------------------------

from tutorial_utils.exercises import nb4b  # noqa: E402


def _learner_scan(decay="exp", drive="delta", read_before_update=False, contract="C", layout="bdl",
                  state_device=None):
    """A learner's sequential scan, right by default; each argument plants one mistake."""
    def scan(u, delta, A, B, C):
        b, d, l = u.shape
        h = torch.zeros(b, d, A.shape[1], device=state_device or u.device)
        ys = []
        for t in range(l):
            step = delta[:, :, t, None]
            a = {"exp": torch.exp(step * A), "A": A, "exp(A)": torch.exp(A), "linear": step * A}[decay]
            x = B[:, None, :, t] * u[:, :, t, None] * (step if drive == "delta" else 1.0)
            before = h
            h = a * h + x
            state = before if read_before_update else h
            ys.append({"C": (state * C[:, None, :, t]).sum(-1), "sum": state.sum(-1), "none": state}[contract])
        y = torch.stack(ys, dim=-1 if contract != "none" else 2)
        return y.transpose(1, 2) if layout == "bld" else y
    return scan


@pytest.mark.parametrize("mistake,message", [
    (dict(decay="A"), "multiplied by A itself"),
    (dict(decay="exp(A)"), "without the step size"),
    (dict(decay="linear"), "not exp(delta_t * A)"),
    (dict(drive="none"), "scale it by the step size"),
    (dict(decay="A", drive="none"), "not discretised"),
    (dict(read_before_update=True), "before* step t's update"),
    (dict(contract="sum"), "without C_t"),
    (dict(contract="none"), "still has the state axis"),
    (dict(layout="bld"), "(b, l, d)"),
    (dict(state_device="cpu"), "would crash on a GPU"),
])
def test_scan_exercise_names_typical_mistakes(mistake, message, capsys):
    assert nb4b.check_selective_scan(_learner_scan(**mistake)) is selective_scan_sequential
    out = capsys.readouterr().out
    assert "[x]" in out and message in out, out


def test_scan_exercise_accepts_a_right_answer_and_falls_back_on_a_skipped_one(capsys):
    right = _learner_scan()
    assert nb4b.check_selective_scan(right) is right
    assert "[ok]" in capsys.readouterr().out

    def skipped(u, delta, A, B, C):
        raise NotImplementedError

    assert nb4b.check_selective_scan(skipped) is selective_scan_sequential
    assert "not attempted yet" in capsys.readouterr().out


def test_windows_with_enough_burn_in_reproduce_one_pass_over_a_long_recording():
    from tutorial_utils.models.mamba import apply_in_windows

    backbone = _backbone().eval()
    with torch.no_grad():
        for layer in backbone.layers:  # forget within a few bins, so a short burn-in suffices
            layer.mixer.dt_proj.bias.fill_(3.0)
        tokens = torch.randn(2, 230, 16)
        whole = backbone(tokens)
        windowed = apply_in_windows(backbone, tokens, window=50, burn_in=40)
        cold = apply_in_windows(backbone, tokens, window=50, burn_in=0)
    assert windowed.shape == whole.shape
    torch.testing.assert_close(windowed, whole, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(cold, whole, rtol=1e-4, atol=1e-4)  # without burn-in each window starts cold
    with pytest.raises(ValueError, match="window must be >= 1"):
        apply_in_windows(backbone, tokens, window=0)
