"""GPU code paths, checked on a CPU-only machine.

* Mixed precision: every model and objective takes a training step under CPU bfloat16 autocast,
  the way a GPU runs them (a dtype mismatch crashes here just as it would on a T4).
* Devices: models, objectives, and every exercise's reference and solution run on ``meta``
  tensors (shapes without values). Mixing in a CPU tensor raises there, exactly where mixing it
  into CUDA tensors would crash on a GPU.
"""
import ast
import copy
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from tutorial_utils.batches import Batch
from tutorial_utils import decoding
from tutorial_utils.data.sessions import stack_sessions, stitched_batch
from tutorial_utils.exercises import nb1, nb2
from tutorial_utils.masking import SCHEME_NAMES, intra_region_view, mask_time_bins
from tutorial_utils.models import neurofmx
from tutorial_utils.models import NDT1, NDT1Stitch, add_session, ndt1_by_hand, stitch_forward, swap_session_parts
from tutorial_utils.models.ndt1 import causal_attention_mask, run_with_prompt, sinusoidal_positional_encoding
from tutorial_utils.models.selective_scan import selective_scan_sequential
from tutorial_utils.mtm_metrics import inter_region_bits_per_spike
from tutorial_utils.scaling import few_shot_split
from tutorial_utils.objectives import MaskedAutoencoding, StitchedMaskedAutoencoding, masked_poisson_loss
from tutorial_utils.runtime import AUTOCAST_ENV, autocast_dtype
from tutorial_utils.training import predict_hidden_bins, train

META = torch.device("meta")
SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


def _counts(*shape, seed=0):
    return torch.poisson(torch.full(shape, 1.5), generator=torch.Generator().manual_seed(seed))


def _ndt1_case():
    spikes = _counts(12, 10, 6)
    return NDT1(6, 10), Batch(spikes), MaskedAutoencoding(0.2)


def _stitch_case():
    spikes, session = stack_sessions([_counts(6, 10, 3, seed=1), _counts(6, 10, 5, seed=2)])
    targets = torch.nn.functional.pad(spikes, (0, 2))  # session 1 has 2 held-out units (outputs only)
    return NDT1Stitch([3, 5], 10, n_outputs=[4, 7], d_model=8, n_heads=2), \
        Batch(spikes, targets=targets, session=session), \
        StitchedMaskedAutoencoding(0.2)


def _mtm_case():  # Notebook 4A: one of the four MtM schemes per batch, announced by a prompt token
    batch = stitched_batch([_counts(6, 10, 4, seed=1), _counts(6, 10, 7, seed=2)], n_inputs=[3, 5], width=7,
                           unit_areas=[[0, 0, 1, 1], [0, 1, 1, 2, 2, 0, 2]])
    return NDT1Stitch([3, 5], 10, n_outputs=[4, 7], d_model=8, n_heads=2, n_prompts=len(SCHEME_NAMES)), batch, \
        StitchedMaskedAutoencoding(schemes="mtm", prompts=True)


CASES = {"NDT1 + MaskedAutoencoding": _ndt1_case, "NDT1Stitch + StitchedMaskedAutoencoding": _stitch_case,
         "NDT1Stitch + MtM with prompts": _mtm_case}


def _watch_precision(model, seen: list):
    """Record (autocast on?, output dtype) each time the core's first feed-forward layer runs."""
    linear = model.core.layers.layers[0].linear1
    return linear.register_forward_hook(
        lambda module, args, out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype)))


class _Recording:
    """Wraps an objective; records the precision the model ran in during each call."""

    def __init__(self, objective):
        self.objective, self.seen = objective, []

    def __call__(self, model, batch, generator=None):
        handle = _watch_precision(model, self.seen)
        try:
            return self.objective(model, batch, generator)
        finally:
            handle.remove()


# --- mixed precision ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_one_training_step_under_cpu_bfloat16_autocast(case):
    torch.manual_seed(0)
    model, data, objective = CASES[case]()
    before = copy.deepcopy(model.state_dict())
    recording = _Recording(objective)
    history = train(model, data, data, recording, epochs=1, batch_size=len(data), device="cpu",
                    progress=False, autocast_dtype="bfloat16")
    assert recording.seen and all(on and dtype == torch.bfloat16 for on, dtype in recording.seen)
    assert np.isfinite(history.train_loss[0]) and np.isfinite(history.val_loss[0])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # a step was taken


@pytest.mark.parametrize("case", CASES)
def test_environment_forces_autocast_for_training_and_prediction(case, monkeypatch):
    monkeypatch.setenv(AUTOCAST_ENV, "bfloat16")
    torch.manual_seed(0)
    model, data, objective = CASES[case]()
    recording = _Recording(objective)
    train(model, data, None, recording, epochs=1, batch_size=len(data), device="cpu", progress=False)
    assert recording.seen and all(on for on, _ in recording.seen)

    seen = []
    _watch_precision(model, seen)
    extra = (data.session,) if data.session is not None else ()  # the session ids of a stitched model
    rates = predict_hidden_bins(model, data.spikes, *extra)
    assert seen and all(on and dtype == torch.bfloat16 for on, dtype in seen)
    assert rates.dtype == torch.float32 and torch.isfinite(rates).all()


def test_autocast_choice(monkeypatch):
    monkeypatch.delenv(AUTOCAST_ENV, raising=False)
    assert autocast_dtype("cpu") is None  # off on CPU by default
    assert autocast_dtype("meta", "bfloat16") is None  # only CPU and CUDA have autocast
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert autocast_dtype("cuda") == torch.float16  # a T4
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert autocast_dtype("cuda") == torch.bfloat16
    monkeypatch.setenv(AUTOCAST_ENV, "float16")
    assert autocast_dtype("cpu") == torch.float16 and autocast_dtype("cuda") == torch.float16
    assert autocast_dtype("cpu", "off") is None and autocast_dtype("cpu", torch.bfloat16) == torch.bfloat16
    monkeypatch.setenv(AUTOCAST_ENV, "half")
    with pytest.raises(ValueError, match="TUTORIAL_AUTOCAST must be one of"):
        autocast_dtype("cpu")


# --- devices: models and objectives on meta tensors ---------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("causal", [False, True])
def test_model_and_objective_run_on_meta_tensors(case, causal):
    model, data, objective = CASES[case]()
    model.to(META)
    data = data.to(META)
    extra = (data.session,) if data.session is not None else ()
    output = model(data.spikes, *extra, causal=causal)
    assert output.device == META and output.shape[:2] == data.spikes.shape[:2]
    loss = objective(model, data, torch.Generator().manual_seed(0))
    assert loss.device == META and loss.dim() == 0
    loss.backward()
    assert all(p.grad is not None and p.grad.device == META for p in model.parameters() if p.requires_grad)


# --- devices: every exercise's reference and solution on meta tensors ---------------------------

def _all_on_meta(*tensors):
    return all(t.device == META for t in tensors if torch.is_tensor(t))


def _run_mask(fn):
    spikes = _counts(4, 20, 3).to(META)
    masked, mask = fn(spikes, 0.2, torch.Generator().manual_seed(0))  # the generator stays on the CPU
    assert _all_on_meta(masked, mask) and mask.shape == (4, 20) and mask.dtype == torch.bool


def _run_loss(fn):
    loss = fn(torch.randn(4, 20, 3, device=META, requires_grad=True), _counts(4, 20, 3).to(META),
              torch.zeros(4, 20, dtype=torch.bool, device=META))
    assert _all_on_meta(loss) and loss.dim() == 0
    loss.backward()


def _run_positional_encoding(fn):  # no tensor inputs: a module buffer, moved with the model
    assert tuple(torch.as_tensor(fn(10, 7)).shape) == (10, 7)


def _run_attention(fn):
    q, k, v = (torch.randn(2, 6, 8, device=META) for _ in range(3))
    out = fn(q, k, v)
    assert _all_on_meta(out) and tuple(out.shape) == (2, 6, 8)


def _run_encoder_layer(fn):
    layer = NDT1(8, 10).core.layers.layers[0].to(META).eval()
    out = fn(torch.randn(3, 10, 8, device=META), layer)
    assert _all_on_meta(out) and tuple(out.shape) == (3, 10, 8)


def _run_ndt1_forward(fn):
    model = NDT1(6, 12, d_model=8).to(META).eval()
    out = fn(model, _counts(3, 10, 6).to(META))
    assert _all_on_meta(out) and tuple(out.shape) == (3, 10, 6)


def _run_stitch_forward(fn):
    model = NDT1Stitch([3, 5], 10, n_outputs=[4, 7], d_model=8, n_heads=2).to(META).eval()
    spikes, session = stack_sessions([_counts(2, 10, 3), _counts(3, 10, 5)])
    out = fn(model, spikes.to(META), session.to(META))
    assert _all_on_meta(out) and tuple(out.shape) == (5, 10, 7)


def _run_swap(fn):
    model = NDT1Stitch([3, 5], 4, d_model=8, n_heads=2).to(META)
    fn(model, 1, 0)
    assert _all_on_meta(*model.parameters())


def _run_shift_by_lag(fn):
    features, behaviour = fn(_counts(2, 10, 3).to(META), torch.randn(2, 10, 2, device=META), 4)
    assert _all_on_meta(features, behaviour) and tuple(features.shape) == (2, 6, 3)


def _run_causal_mask(fn):
    mask = fn(6, META)
    assert _all_on_meta(mask) and tuple(mask.shape) == (6, 6) and mask.dtype == torch.bool


def _run_history_design(fn):
    design = fn(_counts(2, 6, 2).to(META), 3)
    assert _all_on_meta(design) and tuple(design.shape) == (2, 6, 6)


def _run_selective_scan(fn):
    u, delta, z = (torch.randn(2, 3, 7, device=META) for _ in range(3))
    A, B, C = torch.randn(3, 4, device=META), torch.randn(2, 4, 7, device=META), torch.randn(2, 4, 7, device=META)
    y = fn(u, delta, A, B, C)
    assert _all_on_meta(y) and tuple(y.shape) == (2, 3, 7)
def _run_intra_region_view(fn):
    in_region = torch.tensor([[1, 1, 1, 0, 0, 0]], dtype=torch.bool).expand(2, -1).to(META)
    targets = torch.tensor([[0, 1, 0, 0, 0, 0]], dtype=torch.bool).expand(2, -1).to(META)
    inputs, scored = fn(_counts(2, 5, 6).to(META), in_region, targets)
    assert _all_on_meta(inputs, scored) and tuple(scored.shape) == (2, 5, 6)


def _run_with_prompt(fn):
    core = NDT1(8, 10).core.to(META).eval()
    out = fn(core, torch.randn(3, 10, 8, device=META), torch.randn(3, 1, 8, device=META), True)
    assert _all_on_meta(out) and tuple(out.shape) == (3, 10, 8)


def _run_inter_region_metric(fn):  # numpy in, a number out: no device to get wrong
    spikes = _counts(3, 6, 4).numpy()
    assert np.isfinite(fn(lambda visible: np.ones(spikes.shape), spikes, np.array([0, 0, 1, 1])))


def _run_few_shot_split(fn):  # trial indices in, trial indices out: no tensors, nothing to misplace
    split = fn(20, 5, 6, seed=0)
    assert len(split.fit) + len(split.stop) == 5 and len(split.evaluate) == 6


# Every exercise of every notebook, by the solution's function name: (reference, run on meta).
def _run_cross_attention(fn):  # Notebook 4B
    q, k, v = (torch.randn(2, 3, n, 4, device=META) for n in (5, 7, 7))
    mask = torch.zeros(2, 3, 7, dtype=torch.bool, device=META)
    assert _all_on_meta(fn(q, k, v, mask))


def _run_info_nce(fn):  # Notebook 4B
    anchors, positives = torch.randn(6, 3, device=META), torch.randn(6, 3, device=META)
    assert _all_on_meta(fn(anchors, positives, 0.1))


EXERCISES = {
    "mask_time_bins": (mask_time_bins, _run_mask),
    "masked_poisson_loss": (masked_poisson_loss, _run_loss),
    "positional_encoding": (sinusoidal_positional_encoding, _run_positional_encoding),
    "attention": (ndt1_by_hand.scaled_dot_product_attention, _run_attention),
    "encoder_layer": (ndt1_by_hand.encoder_layer, _run_encoder_layer),
    "ndt1_forward": (ndt1_by_hand.ndt1_forward, _run_ndt1_forward),
    "stitch_forward": (stitch_forward, _run_stitch_forward),
    "swap_session_parts": (swap_session_parts, _run_swap),
    "shift_by_lag": (decoding.shift_by_lag, _run_shift_by_lag),
    "causal_attention_mask": (causal_attention_mask, _run_causal_mask),
    "history_design_matrix": (decoding.history_design_matrix, _run_history_design),
    "selective_scan_sequential": (selective_scan_sequential, _run_selective_scan),
    # Notebook 4B (NeuroFMX section)
    "cross_attention": (neurofmx.cross_attention, _run_cross_attention),
    "info_nce": (neurofmx.info_nce, _run_info_nce),
    "intra_region_view": (intra_region_view, _run_intra_region_view),
    "run_with_prompt": (run_with_prompt, _run_with_prompt),
    "inter_region_bits_per_spike": (inter_region_bits_per_spike, _run_inter_region_metric),
    "few_shot_split": (few_shot_split, _run_few_shot_split),
}


def _python_line(line: str) -> str:
    """IPython's `!pip ...` / `%magic` lines become `pass` (same indent), so the cell parses as Python."""
    stripped = line.lstrip()
    return line[: len(line) - len(stripped)] + "pass" if stripped.startswith(("!", "%")) else line


def solution_functions(path: Path) -> dict:
    """The functions defined in a solution notebook's exercise cells (those with solution markers),
    executed with the notebook's own imports."""
    notebook = nbformat.read(path, as_version=4)
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    trees = [ast.parse("\n".join(_python_line(line) for line in src.splitlines())) for src in code]
    namespace = {}
    for tree in trees:  # the notebook's imports, wherever they are
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        exec(compile(ast.Module(imports, []), str(path), "exec"), namespace)
    found = {}
    for src, tree in zip(code, trees):
        if "### BEGIN SOLUTION" not in src:
            continue
        functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        assert functions, f"{path.name}: a solution cell defines no function:\n{src}"
        exec(compile(ast.Module(functions, []), str(path), "exec"), namespace)
        found.update({f.name: namespace[f.name] for f in functions})
    return found


def _all_solutions():
    solutions = {}
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        solutions.update({(path.name, name): fn for name, fn in solution_functions(path).items()})
    return solutions


SOLUTION_FUNCTIONS = _all_solutions()


def test_every_exercise_is_covered():
    assert {name for _, name in SOLUTION_FUNCTIONS} == set(EXERCISES), \
        "register each new exercise in EXERCISES (with how to run it on meta tensors)"


@pytest.mark.parametrize("name", EXERCISES)
def test_exercise_reference_runs_on_meta_tensors(name):
    reference, run = EXERCISES[name]
    run(reference)


@pytest.mark.parametrize("key", SOLUTION_FUNCTIONS, ids=lambda key: f"{key[0]}:{key[1]}")
def test_exercise_solution_runs_on_meta_tensors(key):
    EXERCISES[key[1]][1](SOLUTION_FUNCTIONS[key])


# --- the exercise checks tell a learner whose code would crash on a GPU -------------------------

def _cpu_mask(spikes, mask_ratio=0.2, generator=None):  # right numbers, CPU-only mask
    n_trials, n_bins, _ = spikes.shape
    order = torch.rand(n_trials, n_bins, generator=generator).argsort(dim=1)
    mask = torch.zeros(n_trials, n_bins, dtype=torch.bool)
    mask.scatter_(1, order[:, :max(1, round(mask_ratio * n_bins))], True)
    return spikes.masked_fill(mask.unsqueeze(-1), 0.0), mask


def test_mask_check_says_a_cpu_mask_would_crash_on_a_gpu(capsys):
    assert nb1.check_mask_time_bins(_cpu_mask) is mask_time_bins
    out = capsys.readouterr().out
    assert "would crash on a GPU" in out and "device=spikes.device" in out
    assert "mask.unsqueeze(-1)" in out  # the learner's own line
    good = SOLUTION_FUNCTIONS[("01_ndt1_lorenz.ipynb", "mask_time_bins")]
    assert nb1.check_mask_time_bins(good) is good


def test_loss_check_says_a_cpu_tensor_would_crash_on_a_gpu(capsys):
    def cpu_weights(log_rates, spikes, mask):
        weights = torch.zeros(spikes.shape[:2]).masked_fill(mask, 1.0)  # created on the CPU
        nll = torch.exp(log_rates) - spikes * log_rates
        return (nll * weights.unsqueeze(-1)).sum() / (weights.sum() * spikes.shape[2])

    assert nb1.check_masked_poisson_loss(cpu_weights) is masked_poisson_loss
    assert "would crash on a GPU" in capsys.readouterr().out


def test_swap_check_says_new_cpu_parameters_would_crash_on_a_gpu(capsys):
    def new_tensors(model, source, target):
        with torch.no_grad():
            model.read_in[target].weight.data = torch.zeros(model.read_in[target].weight.shape)  # a CPU tensor
            n = min(model.read_in[source].weight.shape[1], model.n_inputs[target])
            model.read_in[target].weight[:, :n] = model.read_in[source].weight[:, :n]
            model.read_in[target].bias.copy_(model.read_in[source].bias)
            model.session_embedding.weight[target] = model.session_embedding.weight[source]

    assert nb2.check_swap_session_parts(new_tensors) is swap_session_parts
    out = capsys.readouterr().out
    assert "would crash on a GPU" in out and "in place" in out and ".data = torch.zeros(" in out


def test_a_crash_is_reported_at_the_learners_own_line(capsys):
    def crashes(log_rates, spikes, mask):
        nll = torch.exp(log_rates) - spikes * log_rates
        return torch.einsum("btn,bt->", nll, mask)  # bool mask: torch raises deep inside einsum

    assert nb1.check_masked_poisson_loss(crashes) is masked_poisson_loss
    out = capsys.readouterr().out
    line = crashes.__code__.co_firstlineno + 2
    assert f"line {line}: 'return torch.einsum(" in out, out


def test_adding_a_session_keeps_the_model_on_its_device():
    # a GPU bug once: the new session's embedding row was taken to the CPU and concatenated with
    # the CUDA model's rows (Notebook 3's leave-one-session-out crashed on Colab)
    model = NDT1Stitch([3, 5], 10, d_model=8, n_heads=2).to(META)
    bigger = add_session(model, 4, 6)
    assert _all_on_meta(*bigger.parameters()) and bigger.n_inputs == [3, 5, 4]
    spikes, session = _counts(2, 10, 5).to(META), torch.tensor([2, 0], device=META)
    assert bigger(spikes, session).device == META
