"""The chunked scan behind :func:`~tutorial_utils.models.selective_scan.selective_scan_parallel`.

It computes the core of the selective scan, for every channel d and state n,

    h_t = a_t * h_{t-1} + x_t,    a_t = exp(delta_t A),  x_t = delta_t u_t B_t,    y_t = sum_n C_t h_t

(h_0 = 0), with a few big tensor operations instead of a loop over time, and its gradient with a
hand-written backward pass. Step sizes (softplus, bias), the skip D and the gate z are plain autograd
around it (selective_scan.py).

Forward. From the state h_0 entering a stretch of steps 1..t,

    h_t = (a_1 ... a_t) h_0 + sum_{s <= t} (a_{s+1} ... a_t) x_s.

A product of decays is a sum of log-decays: with T_t = log a_2 + ... + log a_t = A (delta_2 + ... +
delta_t) (a cumulative sum of the step sizes; T_1 = 0) and E_t = exp(T_t),

    h_t = E_t * ( a_1 h_0 + sum_{s <= t} x_s / E_s )                 -- one cumsum, no loop.

1 / E_s grows without bound along a sequence (float32 overflows after a few hundred steps), so the
sequence is cut into chunks of K steps and T restarts at every chunk; K is short enough that |T| stays
within a safe bound (selective_scan._chunk_length). All chunks are computed at once from their
entering states h_0. Those follow from chunk to chunk by the same kind of recurrence, over l / K
chunks instead of l steps, on (b, d, n) tensors: h_0 of chunk c + 1 = E_K (a_1 h_0 + sum_s x_s / E_s)
of chunk c (_scan_over_chunks).

Backward. Let g_t = dL/dh_t, the gradient reaching the state at step t from y_t and from every later
state (h_{t+1} = a_{t+1} h_t + ..., so h_t reaches the future through a_{t+1}):

    g_t = C_t dy_t + a_{t+1} g_{t+1}                                 -- the same recurrence, run backwards.

Unrolled within a chunk whose last state receives G (from the next chunk, or the caller's gradient of
the last state), with a_{t+1} ... a_s = E_s / E_t:

    g_t = ( sum_{s >= t} E_s C_s dy_s  +  E_K G ) / E_t              -- one reversed cumsum.

The chunks are linked backwards as they were forwards: the chunk before receives G = a_1 g_1 (of this
chunk's first step). Then every input follows from h_t = a_t h_{t-1} + x_t by the chain rule:

    dx_t = g_t                     -> dB_t = sum_d g_t delta_t u_t;  d(delta_t u_t) = sum_n g_t B_t
    d log a_t = g_t a_t h_{t-1} = g_t (h_t - x_t)   -> dA = sum_{b,t} (d log a_t) delta_t;
                                                       ddelta_t += sum_n (d log a_t) A
    dC_t = sum_d dy_t h_t

Only the inputs, E and h are kept for the backward pass (autograd through the forward would store
and replay about a dozen (b, d, l, n) intermediates). The backward pass is not differentiable itself:
for second derivatives use the sequential scan.

Speed notes. On a CPU memory traffic sets the speed: big tensors are updated in place; the
exponential is taken with exp2 (a few times faster than exp there; A is scaled by log2(e) once). On a
GPU, at a course model's size, the time goes into launching kernels (each takes microseconds whatever
its size), so the GPU's route takes as few operations as it can: the inputs are padded in one go and
the chunks are linked in closed form (_scan_over_chunks) rather than step by step.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def chunked_scan(delta, u, A, B, C, chunk_length: int):
    """y (b, d, l) and the last state h_l (b, d, n) of the recurrence above.

    ``delta``, ``u`` (b, d, l) (step sizes after any softplus), ``A`` (d, n), ``B``, ``C`` (b, n, l),
    all of one floating dtype; ``chunk_length`` K >= 1 (any K gives the same numbers up to rounding, as
    long as |A| * (sum of K - 1 step sizes) does not overflow exp).
    """
    return _ChunkedScan.apply(delta, u, A, B, C, chunk_length)


def _chunks(length: int, K: int) -> tuple[int, int]:
    """(number of chunks, padding): the time axis is padded to whole chunks."""
    n_chunks = max(1, -(-length // K))
    return n_chunks, n_chunks * K - length


class _ChunkedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, delta, u, A, B, C, K):
        batch, channels, length = u.shape
        n = A.shape[1]
        n_chunks, pad = _chunks(length, K)
        # The four inputs are padded together: on a GPU, at a course model's size, the time goes into
        # launching kernels, not into arithmetic, so fewer and bigger operations are faster. Padded
        # steps have delta = 0: decay exp(0) = 1 and drive 0, so they keep the state as it is (the
        # last state stays the true one).
        inputs = torch.cat([delta, u, B, C], dim=1)
        inputs = F.pad(inputs, (0, pad)) if pad else inputs
        delta, u = inputs[:, :channels], inputs[:, channels:2 * channels]                  # (b, d, L)
        chunked = (batch, channels, n_chunks, K, n)                     # a (b, d, L, n) tensor's chunks
        few_ops = _launch_bound(u, chunked)
        B_t, C_t = (_per_step(inputs[:, 2 * channels + i * n:2 * channels + (i + 1) * n], copy=not few_ops)
                    for i in (0, 1))                                   # (b, 1, L, n): B_t, C_t per step

        steps = delta.reshape(batch, channels, n_chunks, K).cumsum(-1)  # delta_1 + ... + delta_t per chunk
        E = _exp_times_A(steps - steps[..., :1], A).view(batch, channels, -1, n)   # (b, d, L, n): exp(T_t)
        first = _exp_times_A(steps[..., 0], A)                          # (b, d, c, n): a_1 per chunk
        chunk_log_decay = _times_A(steps[..., -1], A)                   # (b, d, c, n): log(E_K a_1)
        h = torch.mul((delta * u)[..., None], B_t)                      # x_t
        _cumsum_chunks(h.div_(E).view(chunked))                         # sum_{s <= t} x_s / E_s
        # Chunk to chunk: the state leaving chunk c is E_K (a_1 h_0 + its inputs so far), a linear
        # recurrence over the chunks with decay E_K a_1.
        h5, E5 = h.view(chunked), E.view(chunked)
        entering, state = _scan_over_chunks(chunk_log_decay, E5[:, :, :, -1] * h5[:, :, :, -1],
                                            at_once=few_ops, chunk_length=K)
        h5.add_((first * entering)[:, :, :, None]).mul_(E5)             # h_t = E_t (a_1 h_0 + ...)
        y = _sum_states(torch.mul(h, C_t))                              # (b, d, L): contract the state

        ctx.save_for_backward(delta, u, A, B_t, C_t, E, h, first, chunk_log_decay)
        ctx.length, ctx.K, ctx.few_ops = length, K, few_ops
        ctx.set_materialize_grads(False)                                # no zeros for an unused output
        return y[:, :, :length], state

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dlast):
        delta, u, A, B_t, C_t, E, h, first, chunk_log_decay = ctx.saved_tensors
        length, K = ctx.length, ctx.K
        batch, channels, padded = delta.shape
        n = A.shape[1]
        n_chunks, pad = padded // K, padded - length
        chunked = (batch, channels, n_chunks, K, n)
        with full_precision(delta.device):
            if dy is None:                                              # only the last state was used
                dy = delta.new_zeros(batch, channels, length)
            dy = F.pad(dy, (0, pad)) if pad else dy
            # g_t E_t = sum_{s >= t} E_s C_s dy_s + E_K G: a cumsum backwards in time. (Not total minus
            # cumsum: E_s spans many orders of magnitude, and the difference of large sums would cancel.)
            g = torch.mul(dy[..., None], C_t).mul_(E).view(chunked)    # E_s C_s dy_s
            g = _cumsum_chunks(g, backwards=True)
            # Chunk to chunk, backwards: chunk c receives G from chunk c + 1, a_1 g_1 of chunk c + 1
            # (E_1 = 1), i.e. a_1 (its own sum + E_K G'): the same recurrence, over reversed chunks.
            E5 = E.view(chunked)
            from_next, _ = _scan_over_chunks(chunk_log_decay, first * g[:, :, :, 0], dlast, reverse=True,
                                             at_once=ctx.few_ops, chunk_length=K)
            g.add_((E5[:, :, :, -1] * from_next)[:, :, :, None])
            g = g.view_as(E).div_(E)                                    # g_t = dL/dh_t

            grad_delta = grad_u = grad_A = grad_B = grad_C = None
            drive_scale = delta * u                                     # x_t = (delta_t u_t) B_t
            work = torch.empty_like(h)                                  # one buffer for the products below
            if ctx.needs_input_grad[3]:
                grad_B = torch.mul(g, drive_scale[..., None], out=work).sum(1)   # (b, L, n)
            if ctx.needs_input_grad[4]:
                grad_C = torch.mul(h, dy[..., None], out=work).sum(1)
            grad_scale = _sum_states(torch.mul(g, B_t, out=work))       # d(delta_t u_t), (b, d, L)
            # g_t (h_t - x_t) = g_t a_t h_{t-1}, with x_t = (delta_t u_t) B_t again
            d_log_decay = torch.addcmul(h, drive_scale[..., None], B_t, value=-1, out=work).mul_(g)
            # (g is not needed any more: its buffer takes the last product)
            grad_delta = torch.addcmul(_sum_states(torch.mul(d_log_decay, A[:, None], out=g)), grad_scale, u)
            grad_u = grad_scale * delta
            if ctx.needs_input_grad[2]:
                grad_A = (torch.matmul(delta[:, :, None, :], d_log_decay).sum(0)[:, 0]  # (d, n), as _sum_states
                          if _cpu_route(delta) else (d_log_decay * delta[..., None]).sum((0, 2)))

        grad_B, grad_C = (None if grad is None else grad.transpose(1, 2) for grad in (grad_B, grad_C))
        return (grad_delta[..., :length], grad_u[..., :length], grad_A,
                *(None if grad is None else grad[..., :length] for grad in (grad_B, grad_C)), None)


# Below this many numbers in a (b, d, L, n) tensor, a GPU spends its time launching kernels (a course
# model's scan: 2 x 64 x 1000 x 16 = 2M); above it, moving memory (Mamba's own size: 500M).
_LAUNCH_BOUND_SIZE = 2 ** 24


def _launch_bound(x, full_shape) -> bool:
    """Whether the scan of a (b, d, L, n) tensor of ``full_shape`` on x's device is launch-bound: then
    fewer, bigger operations win, even if they move more memory (not on a CPU)."""
    return not _cpu_route(x) and math.prod(full_shape) <= _LAUNCH_BOUND_SIZE


def _cpu_route(x) -> bool:
    """Whether x is on a CPU, where three steps take a faster route than on a GPU (the tests also run
    the GPU's route on a CPU by patching this)."""
    return x.device.type == "cpu"


def _scan_over_chunks(log_decay, value, initial=None, reverse: bool = False, at_once: bool = False,
                      chunk_length: int = 64):
    """s_c = exp(log_decay_c) s_{c-1} + value_c over the chunks c (axis 2 of (b, d, c, n)), from
    s_{-1} = initial (zeros if None); with ``reverse``, s_c = exp(log_decay_c) s_{c+1} + value_c from
    s_C = initial, the same recurrence backwards in time.

    Returns the state each chunk receives (s_{c-1}; with ``reverse`` s_{c+1}), (b, d, c, n), and the
    state at the far end (s_{C-1}; with ``reverse`` s_0), (b, d, n). Two ways to the same numbers,
    each where it is faster (both are checked against a loop):

    * ``at_once`` (a launch-bound GPU): all states from the unrolled sum, a handful of operations
      however many chunks (:func:`_scan_over_chunks_at_once`); ``chunk_length`` (the K of the chunks)
      bounds the memory this takes;
    * else a log-step scan, a few operations per doubling on tensors no bigger than ``value``
      (:func:`_scan_over_chunks_by_doubling`).
    """
    if at_once:
        # At most 64 chunks at once, and at most 2 K: then a block's matrix, (block + 1)^2 numbers per
        # (b, d, n), is about as big as two of the (b, d, L, n) tensors around it, at most.
        return _scan_over_chunks_at_once(log_decay, value, initial, reverse, block=min(64, 2 * chunk_length))
    initial = value.new_zeros(value.shape[:2] + value.shape[3:]) if initial is None else initial
    if not reverse:
        return _scan_over_chunks_by_doubling(log_decay.exp(), value, initial)
    received, far_end = _scan_over_chunks_by_doubling(log_decay.flip(2).exp(), value.flip(2), initial)
    return received.flip(2), far_end


def _scan_over_chunks_at_once(log_decay, value, initial, reverse: bool, block: int):
    """_scan_over_chunks as a weighted sum of the values before each state (after it, ``reverse``):

        s_c = sum_{j <= c} exp(sum_{j < k <= c} log_decay_k) value_j       (initial: a value at j = -1)
        s_c = sum_{j >= c} exp(sum_{c <= k < j} log_decay_k) value_j       (reverse; initial at j = C)

    one small matrix of decays per (b, d, n). Its exponents are cumulative sums of triangular copies
    of log_decay, not differences of one cumulative sum (which would cancel badly far along a
    sequence). The matrices grow quadratically with the number of chunks, so beyond ``block`` chunks
    the blocks go one after the other, each starting from the state the one before left.
    """
    batch, channels, n_chunks, n = value.shape
    state, received = initial, []
    starts = range(0, n_chunks, block)
    for start in (reversed(starts) if reverse else starts):
        ld, v = log_decay[:, :, start:start + block], value[:, :, start:start + block]
        size = ld.shape[2] + 1
        # one more position for the state coming in (its value; its log-decay is never used). For the
        # reverse recurrence, log-decays shifted by one position: then the sums run over c < k <= j.
        ld = F.pad(ld, (0, 0, 1, 0))
        if state is None:
            v = F.pad(v, (0, 0, 0, 1) if reverse else (0, 0, 1, 0))
        else:
            v = torch.cat([v, state[:, :, None]] if reverse else [state[:, :, None], v], 2)
        exponent = ld.transpose(2, 3)[..., None, :].expand(batch, channels, n, size, size)   # [i, k] = ld_k
        if reverse:   # [i, j] = sum_{i < k <= j} ld_k, then zero below the diagonal
            decay = exponent.triu(1).cumsum(-1).exp_().triu_()
        else:         # [i, j] = sum_{j < k <= i} ld_k (the transposed layout), then zero above it
            decay = exponent.transpose(-1, -2).tril(-1).cumsum(-2).exp_().tril_()
        states = (decay * v.transpose(2, 3)[..., None, :]).sum(-1).transpose(2, 3)   # (b, d, size, n)
        received.append(states[:, :, 1:] if reverse else states[:, :, :-1])
        state = states[:, :, 0] if reverse else states[:, :, -1]
    if reverse:
        received.reverse()
    return torch.cat(received, 2) if len(received) > 1 else received[0], state


def _scan_over_chunks_by_doubling(decay, value, initial):
    """_scan_over_chunks as a log-step scan (decay = exp(log_decay)): after the step with offset k,
    every chunk holds the combined effect of the (up to) 2k chunks ending with it, since two
    stretches compose as (decay, value) then (decay', value') -> (decay' decay, decay' value + value').
    With A < 0 the decays lie in (0, 1], so their products cannot overflow.
    """
    value = torch.cat([value[:, :, :1] + decay[:, :, :1] * initial[:, :, None], value[:, :, 1:]], dim=2)
    offset = 1
    while offset < value.shape[2]:
        earlier_value, earlier_decay = value[:, :, :-offset], decay[:, :, :-offset]
        value = torch.cat([value[:, :, :offset], value[:, :, offset:] + decay[:, :, offset:] * earlier_value], dim=2)
        decay = torch.cat([decay[:, :, :offset], decay[:, :, offset:] * earlier_decay], dim=2)
        offset *= 2
    return torch.cat([initial[:, :, None], value[:, :, :-1]], dim=2), value[:, :, -1]


def _cumsum_chunks(x, backwards: bool = False, loop: bool | None = None):
    """Cumulative sum over the steps of every chunk of x (b, d, c, K, n), returned (in x itself, except
    a GPU's backwards sum, which takes a flipped copy).

    ``backwards``: from each chunk's last step to its first. On a CPU, a loop over the K steps adding
    one (b, d, c, n) slice to the next is about twice as fast as torch.cumsum along the K axis (and
    needs no flip for the backwards sum); on a GPU one cumsum kernel beats K small ones. ``loop``
    forces either way (default: the loop on a CPU).
    """
    if not (_cpu_route(x) if loop is None else loop):
        return x.flip(3).cumsum(3).flip(3) if backwards else x.cumsum_(3)
    K = x.shape[3]
    for k in (range(K - 2, -1, -1) if backwards else range(1, K)):
        x[:, :, :, k].add_(x[:, :, :, k + 1 if backwards else k - 1])
    return x


def _sum_states(x):
    """x (..., n) summed over its last (state) axis. On a CPU as a matrix-vector product with ones
    (about twice as fast as x.sum(-1) for a short last axis); elsewhere a plain sum (a GPU may round
    float32 matrix products to TF32)."""
    return torch.matmul(x, x.new_ones(x.shape[-1])) if _cpu_route(x) else x.sum(-1)


def _times_A(steps, A, scale: float = 1.0):
    """steps * A * scale for (b, d, ...) sums of step sizes and A (d, n): (b, d, ..., n)."""
    shape = (A.shape[0],) + (1,) * (steps.dim() - 2) + (A.shape[1],)
    return torch.mul(steps[..., None], (A * scale).view(shape) if scale != 1.0 else A.view(shape))


def _exp_times_A(steps, A):
    """exp(steps * A), (b, d, ..., n); on a CPU as exp2 of a pre-scaled A (a few times faster there)."""
    if _cpu_route(steps):
        return _times_A(steps, A, math.log2(math.e)).exp2_()
    return _times_A(steps, A).exp_()


def _per_step(matrix, copy: bool):
    """B or C (b, n, L) as (b, 1, L, n), the layout the (b, d, L, n) products broadcast it in: a
    contiguous copy (the products run faster on it) or, where launching kernels costs more, a view."""
    per_step = matrix.transpose(1, 2)[:, None]
    return per_step.contiguous() if copy else per_step


@contextlib.contextmanager
def full_precision(device: torch.device):
    """Switch autocast off (einsum and matmul would otherwise run in bfloat16), also in backward."""
    if device.type in ("cpu", "cuda"):
        with torch.autocast(device.type, enabled=False):
            yield
    else:  # meta, mps...: no autocast state to undo
        yield
