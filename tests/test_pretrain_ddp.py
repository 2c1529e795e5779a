"""scripts/pretrain.py under torchrun: 2 CPU ranks (gloo) against 1 process, and a crash + resume.

The runs are tiny (32 windows of the synthetic stand-in, a 1-layer model, 8 steps = 2 epochs) and
shared between the tests through module fixtures: one 2-rank run, one single-process run, and one
2-rank run that dies at step 5 and is resumed from its step-3 checkpoint (mid-epoch).
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "pretrain.py"
STEPS, GLOBAL_BATCH, STEPS_PER_EPOCH = 8, 8, 4  # 32 windows / 8 per step
OPTIONS = ["--sessions", "mc_maze_small", "mc_maze_medium", "--max-trials", "16", "--global-batch-size",
           str(GLOBAL_BATCH), "--max-steps", str(STEPS), "--d-model", "16", "--n-layers", "1", "--warmup-steps", "2",
           "--log-every", "1", "--synthetic"]


def run_script(out_dir: Path, *flags: str, ranks: int | None = None, check: bool = True):
    """Run the script as one plain process (ranks=None) or under torchrun with ``ranks`` CPU ranks."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
                if ranks else [sys.executable])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([*launcher, str(SCRIPT), *OPTIONS, "--out-dir", str(out_dir), *flags],
                            env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"pretrain.py failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-8000:]}")
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def final_weights(out_dir: Path) -> dict:
    state = torch.load(out_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == STEPS
    return state["model"]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_ranks")
    run_script(out, "--log-window-ids", "--save-every", "4", ranks=2)
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """One process, the same global batch cut into 2 accumulated micro-batches (one per rank above)."""
    out = tmp_path_factory.mktemp("one_process")
    run_script(out, "--log-window-ids", "--grad-accum", "2", "--save-every", "4")
    return out


def test_ranks_see_disjoint_windows_and_reshuffle_every_epoch(two_ranks, one_process):
    ranks = [read_jsonl(two_ranks / f"windows_rank{r}.jsonl") for r in (0, 1)]
    alone = read_jsonl(one_process / "windows_rank0.jsonl")
    assert [len(r) for r in ranks] == [STEPS, STEPS]
    for step in range(STEPS):
        first, second = (set(r[step]["windows"]) for r in ranks)
        assert len(first) == len(second) == GLOBAL_BATCH // 2
        assert not first & second, f"step {step}: both ranks trained on windows {sorted(first & second)}"
        # together, the ranks train on exactly the windows one process takes for that step
        assert first | second == set(alone[step]["windows"])
    # each epoch, the two ranks together cover every window once, in a new order (set_epoch)
    epochs = [[w for r in ranks for line in r[e * STEPS_PER_EPOCH:(e + 1) * STEPS_PER_EPOCH] for w in line["windows"]]
              for e in (0, 1)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(STEPS_PER_EPOCH * GLOBAL_BATCH))
    assert epochs[0] != epochs[1], "the second epoch repeats the first epoch's order"


def test_two_ranks_match_one_process_with_the_same_global_batch(two_ranks, one_process):
    ddp, alone = read_jsonl(two_ranks / "log.jsonl"), read_jsonl(one_process / "log.jsonl")
    assert [line["step"] for line in ddp] == [line["step"] for line in alone] == list(range(1, STEPS + 1))
    assert ddp[-1]["loss"] < ddp[0]["loss"]  # it learns
    for a, b in zip(ddp, alone):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6), f"step {a['step']}"
        assert a["lr"] == pytest.approx(b["lr"])
    for name, weight in final_weights(two_ranks).items():
        torch.testing.assert_close(weight, final_weights(one_process)[name], rtol=1e-5, atol=1e-6, msg=name)
    # throughput is logged per rank and summed over ranks
    assert all(len(line["windows_per_s_per_rank"]) == 2 and line["windows_per_s"] > 0 for line in ddp)
    assert ddp[-1]["tokens_per_s"] == pytest.approx(sum(ddp[-1]["tokens_per_s_per_rank"]))


def test_a_run_killed_mid_way_resumes_to_the_same_weights(two_ranks, tmp_path):
    crashed = run_script(tmp_path, "--save-every", "3", "--crash-at-step", "5", ranks=2, check=False)
    assert crashed.returncode != 0
    state = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 3 and state["epoch"] == 0  # the last checkpoint before the crash, mid-epoch
    resumed = run_script(tmp_path, "--save-every", "3", "--resume", ranks=2)
    assert "resuming from" in resumed.stdout and "at step 3" in resumed.stdout
    for name, weight in final_weights(two_ranks).items():
        torch.testing.assert_close(final_weights(tmp_path)[name], weight, rtol=1e-6, atol=1e-7, msg=name)
    # steps 4-5 ran twice (before the crash and after resuming) and gave the same losses
    losses = {}
    for line in read_jsonl(tmp_path / "log.jsonl"):
        losses.setdefault(line["step"], []).append(line["loss"])
    assert [len(losses[s]) for s in range(1, STEPS + 1)] == [1, 1, 1, 2, 2, 1, 1, 1]
    assert losses[4][0] == pytest.approx(losses[4][1]) and losses[5][0] == pytest.approx(losses[5][1])


def test_resume_refuses_a_checkpoint_of_another_run(two_ranks):
    from tutorial_utils.pretraining import load_checkpoint, load_pretrained, parse_options

    model = load_pretrained(two_ranks / "checkpoint.pt")  # the pretrained model, as the notebook gets it
    assert model.session_names == ["sub-Jenkins_ses-small", "sub-Jenkins_ses-medium"] and not model.training
    optimizer = torch.optim.AdamW(model.parameters())
    parts = dict(model=model, optimizer=optimizer, scaler=torch.amp.GradScaler("cuda", enabled=False),
                 scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
    same = parse_options([*OPTIONS, "--out-dir", str(two_ranks)])
    assert load_checkpoint(two_ranks / "checkpoint.pt", same, **parts) == STEPS
    other = parse_options([*OPTIONS, "--out-dir", str(two_ranks), "--seed", "1"])
    with pytest.raises(ValueError, match=r"other options \{'seed': \(0, 1\)\}"):
        load_checkpoint(two_ranks / "checkpoint.pt", other, **parts)


def test_trains_on_a_folder_of_nwb_files(tmp_path):
    """--data-dir: every session file under the folder is streamed (here 3 simulated sessions);
    under CPU bfloat16 autocast, the reduced-precision path a GPU takes."""
    from tutorial_utils.data import simulate_sessions, write_sessions_nwb

    write_sessions_nwb(simulate_sessions(3, n_trials=8, seed=0), tmp_path / "nwb")
    result = run_script(tmp_path / "out", "--data-dir", str(tmp_path / "nwb"), "--max-steps", "2",
                        "--global-batch-size", "4", "--autocast", "bfloat16")
    assert "from 3 sessions" in result.stdout and "autocast torch.bfloat16" in result.stdout
    state = torch.load(tmp_path / "out" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 2 and state["model_config"]["session_names"] == ["session_00", "session_01", "session_02"]
    assert all(line["loss"] == line["loss"] for line in read_jsonl(tmp_path / "out" / "log.jsonl"))  # not NaN


def test_batches_say_which_units_are_real_and_which_are_inputs(tmp_path):
    """Sessions of different widths share a padded batch: padding must never be scored, and
    held-out units are targets only (the objective reads this from the batch, not the model)."""
    from tutorial_utils.data import simulate_sessions, write_sessions_nwb
    from tutorial_utils.pretraining import load_windows, parse_options

    write_sessions_nwb(simulate_sessions(2, n_trials=6, seed=0), tmp_path / "nwb")
    windows = load_windows(parse_options(["--data-dir", str(tmp_path / "nwb"), "--out-dir", str(tmp_path / "out")]))
    assert len(set(windows.n_outputs)) == 2, "the test needs sessions of different widths"
    batch = windows.batch(list(range(len(windows))))
    for row, session in enumerate(batch.session.tolist()):
        assert batch.unit_exists[row].sum() == windows.n_outputs[session]
        assert batch.unit_is_input[row].sum() == windows.n_inputs[session]
        assert not batch.unit_is_input[row, windows.n_inputs[session]:].any()  # held-in units come first


# ---------------------------------------------------------------- bad command lines (in-process, no launch)

CHEAP = ["--sessions", "mc_maze_small", "--max-trials", "8", "--max-steps", "1"]  # should the check be missing


@pytest.fixture
def pretrain_main():
    spec = importlib.util.spec_from_file_location("pretrain_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_missing_data_dir_is_a_clear_error(pretrain_main, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        pretrain_main(["--data-dir", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "out"), *CHEAP])
    assert error.value.code == 2
    message = capsys.readouterr().err
    assert "--data-dir" in message and "nowhere" in message and "is not a folder" in message
    assert not (tmp_path / "out").exists()  # nothing started


def test_global_batch_must_divide_among_ranks_and_micro_batches(pretrain_main, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun --nproc_per_node 2 would set it
    with pytest.raises(SystemExit):
        pretrain_main([*CHEAP, "--global-batch-size", "12", "--grad-accum", "4", "--out-dir", str(tmp_path)])
    message = capsys.readouterr().err
    assert "--global-batch-size 12 is not divisible" in message and "= 8" in message


@pytest.mark.parametrize("flags, expected", [
    (["--grad-accum", "0"], "--grad-accum must be >= 1"),
    (["--config", "missing.yaml"], "does not exist"),
])
def test_other_bad_flags(pretrain_main, flags, expected, capsys):
    with pytest.raises(SystemExit):
        pretrain_main(flags)
    assert expected in capsys.readouterr().err


def test_config_file_sets_defaults_and_flags_win(tmp_path):
    from tutorial_utils.pretraining import parse_options

    (tmp_path / "run.yaml").write_text("global-batch-size: 32\nmax_steps: 7\nsessions: [mc_maze_small]\n")
    args = parse_options(["--config", str(tmp_path / "run.yaml"), "--max-steps", "9"])
    assert (args.global_batch_size, args.max_steps, args.sessions) == (32, 9, ["mc_maze_small"])
    (tmp_path / "bad.json").write_text(json.dumps({"global_batch": 32}))
    with pytest.raises(SystemExit):
        parse_options(["--config", str(tmp_path / "bad.json")])
