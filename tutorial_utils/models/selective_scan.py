"""The selective scan: the recurrence at the heart of Mamba (Gu & Dao, 2023), three ways.

For every channel d and state index n, a hidden state h (b, d, n) is carried along time:

    delta_t = softplus(delta_t + delta_bias)            (optional; the step size, input-dependent)
    h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t     (zero-order-hold-style discretisation)
    y_t     = sum_n C_t[n] * h_t[n]   (+ D * u_t)   (* silu(z_t))

A (d, n) is negative, so exp(delta_t * A) lies in (0, 1): a large step forgets the past quickly, a
small one keeps it. Because delta, B and C depend on the input, the model chooses, token by token,
what to remember: that is what "selective" means.

* :func:`selective_scan_sequential` — the recurrence as written above, one time step at a time.
  Readable and slow (a Python loop over time); the reference the others are tested against.
* :func:`selective_scan_parallel` — the same numbers with a handful of big tensor operations
  (a chunked scan with a hand-written backward pass, derived in models/parallel_scan.py). Pure
  PyTorch: runs on CPU, CUDA, MPS and ``meta``.
* :func:`selective_scan` — what models call: mamba-ssm's fused CUDA kernel when it is installed
  and the tensors are on a GPU, else :func:`selective_scan_parallel`.

All three take the arguments of ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` with
the same names and layouts, so either can stand in for the other:

    u, delta  (b, d, l)   input and (pre-activation) step size, channels first
    A         (d, n)      state matrix (diagonal per channel), real
    B, C      (b, n, l)   input and output matrices, one per time step (shared by the channels)
    D         (d,)        skip connection (optional)
    z         (b, d, l)   gate (optional): the output is multiplied by silu(z)
    delta_bias (d,)       added to delta before the softplus (optional)
    -> out (b, d, l) in u's dtype; with return_last_state also h_L (b, d, n) in float32.

The recurrence is computed in float32 (float64 if given float64) whatever the inputs' dtype, as
mamba-ssm does: in bfloat16 a scan over hundreds of steps would lose the small state updates.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .parallel_scan import chunked_scan, full_precision as _full_precision

IMPLEMENTATIONS = ("auto", "kernel", "parallel", "sequential")


# --- input checks (shared by all implementations) ------------------------------------------------

def _check_inputs(u, delta, A, B, C, D, z, delta_bias) -> None:
    """Raise a ValueError naming the argument, the shape expected and the shape given."""
    def shape(t):
        return tuple(t.shape)

    if u.dim() != 3:
        raise ValueError(f"u must be (batch, channels d, length l), got shape {shape(u)}; "
                         "a (batch, length, channels) tensor needs .transpose(1, 2) first")
    b, d, l = u.shape
    if shape(delta) != (b, d, l):
        raise ValueError(f"delta must have u's shape (b, d, l) = {(b, d, l)}, got {shape(delta)}")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d, n) = ({d}, d_state), got {shape(A)}")
    if A.is_complex():
        raise ValueError("complex A is not supported here; use a real (d, n) A (Mamba's A = -exp(A_log))")
    n = A.shape[1]
    for name, matrix in (("B", B), ("C", C)):
        if shape(matrix) != (b, n, l):
            raise ValueError(f"{name} must be (b, n, l) = {(b, n, l)} (one (n,) vector per sequence and time "
                             f"step; n = A.shape[1]), got {shape(matrix)}")
    for name, vector in (("D", D), ("delta_bias", delta_bias)):
        if vector is not None and shape(vector) != (d,):
            raise ValueError(f"{name} must be (d,) = ({d},), one value per channel, got {shape(vector)}")
    if z is not None and shape(z) != (b, d, l):
        raise ValueError(f"z must have u's shape (b, d, l) = {(b, d, l)}, got {shape(z)}")


def _step_sizes(delta, delta_bias, delta_softplus):
    """(b, d, l) float32 step sizes: bias, then softplus (which keeps every step positive)."""
    delta = delta.to(torch.promote_types(delta.dtype, torch.float32))
    if delta_bias is not None:
        delta = delta + delta_bias.to(delta.dtype)[:, None]
    return F.softplus(delta) if delta_softplus else delta


def _finish(y, u, D, z, dtype, last_state, return_last_state):
    """Skip connection D * u and gate silu(z), applied to the scan's y (b, d, l)."""
    if D is not None:
        y = torch.addcmul(y, u.to(y.dtype), D.to(y.dtype)[:, None])
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    y = y.to(dtype)
    return (y, last_state) if return_last_state else y


# --- (a) the reference: one step at a time -------------------------------------------------------

def selective_scan_sequential(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                              return_last_state=False):
    """The selective scan, one time step after the other (see the module docstring for shapes).

    This is the definition; :func:`selective_scan_parallel` must agree with it.
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype = u.dtype
    with _full_precision(u.device):
        compute = torch.promote_types(dtype, torch.float32)   # float32, or float64 if given float64
        delta = _step_sizes(delta, delta_bias, delta_softplus).to(compute)  # (b, d, l)
        u_, A, B, C = u.to(compute), A.to(compute), B.to(compute), C.to(compute)
        h = u_.new_zeros(u.shape[0], u.shape[1], A.shape[1])               # (b, d, n)
        ys = []
        for t in range(u.shape[2]):
            decay = torch.exp(delta[:, :, t, None] * A)                    # (b, d, n), in (0, 1) for A < 0
            drive = delta[:, :, t, None] * B[:, None, :, t] * u_[:, :, t, None]  # (b, d, n)
            h = decay * h + drive
            ys.append((h * C[:, None, :, t]).sum(-1))                      # (b, d): contract the state
        y = torch.stack(ys, dim=-1) if ys else u_.new_zeros(u.shape)       # (b, d, l)
        return _finish(y, u, D, z, dtype, h, return_last_state)


# --- (b) the fast pure-PyTorch version: a chunked scan --------------------------------------------

# exp() of more than ~88 overflows float32 (~709 float64). The parallel scan keeps every exponent it
# takes within this bound, leaving a wide margin for the inputs it multiplies.
_MAX_EXPONENT = {torch.float32: 60.0, torch.float64: 600.0}


def _chunk_length(steepest: torch.Tensor, largest: int) -> int:
    """The longest chunk (<= ``largest``) over which the summed log-decay stays within _MAX_EXPONENT.

    ``steepest`` bounds |delta_t A| (a 0-dim tensor). Inside a chunk of K steps the exponents span
    K - 1 steps, so |exponent| <= (K - 1) steepest, and K = 1 + bound / steepest never overflows.
    With Mamba's initial step sizes (delta |A| <= 1.6) this is ``largest``; steps that forget
    everything at once give shorter chunks (slower, still exact; K = 1 is the sequential loop).
    ``meta`` tensors have no values, so they keep ``largest``.
    """
    if steepest.device.type == "meta":
        return largest
    steepest, bound = float(steepest), _MAX_EXPONENT.get(steepest.dtype, 60.0)
    return largest if steepest * (largest - 1) <= bound else 1 + int(bound // steepest)


def selective_scan_parallel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                            return_last_state=False, chunk_size: int = 64, block_elements: int = 2 ** 20):
    """The same numbers as :func:`selective_scan_sequential`, with a few big tensor operations.

    The recurrence is unrolled with cumulative sums over chunks of time steps, forward and (by a
    hand-written backward pass) backward: see models/parallel_scan.py for the derivation.

    On a CPU the channels (independent of each other) are scanned in groups whose (b, group, l, n)
    tensors hold about ``block_elements`` numbers: there memory traffic, not arithmetic, sets the
    speed, and smaller temporaries stay in cache. A GPU gets all channels at once.

    ``chunk_size``: the longest chunk; any value gives the same result (up to rounding).
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of time steps, got {chunk_size}")
    batch, channels, length = u.shape
    group = max(1, block_elements // max(1, batch * length * A.shape[1])) if u.device.type == "cpu" else channels
    if group >= channels:
        return _scan_channels(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk_size)
    pieces = []
    for first in range(0, channels, group):
        part = slice(first, first + group)
        pieces.append(_scan_channels(
            u[:, part], delta[:, part], A[part], B, C, None if D is None else D[part], None if z is None else z[:, part],
            None if delta_bias is None else delta_bias[part], delta_softplus, True, chunk_size))
    out = torch.cat([y for y, _ in pieces], dim=1)
    return (out, torch.cat([h for _, h in pieces], dim=1)) if return_last_state else out


def _scan_channels(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk_size):
    """selective_scan_parallel on all the channels it is given at once (inputs already checked)."""
    dtype = u.dtype
    compute = torch.promote_types(dtype, torch.float32)   # float32, or float64 if given float64
    with _full_precision(u.device):
        delta = _step_sizes(delta, delta_bias, delta_softplus).to(compute)  # (b, d, l)
        # the steepest |delta_t A| per channel (cheap: (d,) numbers), at most the largest of them
        steepest = (torch.linalg.vector_norm(delta.detach(), math.inf, dim=(0, 2))       # max |delta|, (d,)
                    * torch.linalg.vector_norm(A.detach(), math.inf, dim=1)).amax() \
            if delta.numel() else delta.new_zeros(())
        y, last_state = chunked_scan(delta, u.to(compute), A.to(compute), B.to(compute), C.to(compute),
                                     _chunk_length(steepest, chunk_size))
        return _finish(y, u, D, z, dtype, last_state, return_last_state)


# --- (c) dispatch ----------------------------------------------------------------------------------

@functools.cache
def mamba_ssm_scan():
    """mamba-ssm's ``selective_scan_fn`` (fused CUDA kernel), or None when it is not installed.

    Imported on first use only: ``import mamba_ssm`` fails (or crashes) without its compiled CUDA
    extension, and CPU users should never pay for trying.
    """
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError, RuntimeError):
        return None
    return selective_scan_fn


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, implementation: str = "auto"):
    """The selective scan models should call; same arguments and result as the functions above.

    ``implementation``: "auto" (the mamba-ssm kernel for CUDA tensors when it is installed, else
    the parallel scan), or force one: "kernel", "parallel", "sequential".
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if implementation == "sequential":
        return selective_scan_sequential(*args)
    if implementation in ("auto", "kernel"):
        kernel = mamba_ssm_scan() if u.is_cuda else None
        if kernel is not None:
            _check_inputs(u, delta, A, B, C, D, z, delta_bias)
            return kernel(*args)
        if implementation == "kernel":
            raise RuntimeError("implementation='kernel' needs CUDA tensors and mamba-ssm installed "
                               f"(tensors on {u.device}; mamba-ssm importable: {mamba_ssm_scan() is not None}). "
                               "See README.md, 'mamba-ssm on a CUDA machine', or use implementation='auto'.")
    return selective_scan_parallel(*args)
