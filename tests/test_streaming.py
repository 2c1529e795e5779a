"""Streaming windows from many NWB files (Notebook 4C): same windows as the eager loader, shards,
continuous windows, bounded memory, and clear errors for bad files."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tutorial_utils.batches import Batch
from tutorial_utils.data import (MazeDataError, UnitVocabulary, WindowBatch, WindowDataset, collate_windows,
                                 simulate_sessions, write_sessions_nwb)
from tutorial_utils.data.maze_nwb import process_session, read_dataset, trial_windows
from tutorial_utils.yardstick import REAL_FILE as REAL_FILE_IN_SHARED, find_real_file


@pytest.fixture(scope="module")
def sessions():
    return simulate_sessions(3, n_trials=16, seed=0)


@pytest.fixture(scope="module")
def files(sessions, tmp_path_factory):
    return write_sessions_nwb(sessions, tmp_path_factory.mktemp("streamed"))


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("bin_ms, checked", [(5, [0, 1]), (20, [2])])  # process_session is slow: a few files
def test_trial_windows_are_the_eager_loaders(files, sessions, bin_ms, checked):
    dataset = WindowDataset(files, bin_ms=bin_ms, max_loaded=1)
    assert len(dataset) == sum(len(s.spikes) for s in sessions) and len(dataset.session_vocab) == 3
    for position in checked:
        path, session = files[position], sessions[position]
        eager = _quiet(process_session, "mc_maze_small", bin_ms, path, None)
        items = [dataset[int(i)] for i in np.flatnonzero(dataset.windows[:, 0] == position)]
        spikes = torch.stack([item["spikes"] for item in items]).numpy()
        np.testing.assert_array_equal(spikes, np.concatenate([eager["heldin_spikes"], eager["heldout_spikes"]], axis=2))
        behaviour = torch.stack([item["behaviour"] for item in items]).numpy()
        np.testing.assert_allclose(behaviour, eager["hand_vel"], atol=0.01)  # mm/s; float32 filtering
        np.testing.assert_array_equal([int(item["condition"]) for item in items], session.conditions)
        assert {int(item["session"]) for item in items} == {dataset.session_vocab.index([session.name])[0]}
        heldout = items[0]["heldout"].numpy()
        assert heldout.sum() == session.n_heldout and heldout[-1] and not heldout[0]
        tokens = [dataset.unit_vocab.tokens[i] for i in items[0]["units"]]
        assert tokens == [f"{session.name}/{u}" for u in session.unit_id]


def _real_file() -> Path:
    try:
        return find_real_file()
    except FileNotFoundError:
        return Path(REAL_FILE_IN_SHARED)


@pytest.mark.skipif(not _real_file().exists(), reason="real NLB test file not found")
def test_real_test_file_streams_the_loaders_windows(tmp_path):
    copy = tmp_path / _real_file().name
    shutil.copy(_real_file(), copy)
    copy.chmod(0o644)
    dataset = WindowDataset([copy], bin_ms=10, splits=("test",))
    assert len(dataset) == 100 and dataset[0]["spikes"].shape == (70, 107)
    streamed = np.stack([dataset[i]["spikes"].numpy() for i in range(len(dataset))])
    nlb = _quiet(read_dataset, copy, 10)
    rows = np.flatnonzero((nlb.trial_info["split"] == "test").to_numpy())
    eager, complete = trial_windows(nlb, ["spikes"], rows, (-250, 450), 10)
    assert complete.all()
    np.testing.assert_array_equal(streamed, eager["spikes"])
    assert int(dataset[0]["condition"]) == -1 and torch.isnan(dataset[0]["behaviour"]).all()  # test files have none


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_are_disjoint_and_cover(files, world_size):
    dataset = WindowDataset(files)
    shards = [dataset.shard(rank, world_size) for rank in range(world_size)]
    ids = [shard.window_id() for shard in shards]
    assert sum(len(i) for i in ids) == len(dataset)
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.arange(len(dataset)))
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1
    # A shard's item is the full dataset's item of the same window.
    np.testing.assert_array_equal(shards[-1][1]["spikes"], dataset[int(ids[-1][1])]["spikes"])
    for shard in shards:  # every epoch's order is a permutation of the shard, the same for the same seed
        for epoch in (0, 1):
            order = shard.epoch_order(epoch)
            np.testing.assert_array_equal(np.sort(order), np.arange(len(shard)))
            np.testing.assert_array_equal(order, shard.epoch_order(epoch))
    assert not np.array_equal(dataset.epoch_order(0), dataset.epoch_order(1))
    assert not np.array_equal(dataset.epoch_order(0), WindowDataset(files, seed=1).epoch_order(0))


def test_continuous_windows_count_stride_and_content(files, sessions):
    window_ms, stride_ms, bin_ms = 300, 100, 10
    dataset = WindowDataset(files[:1], mode="continuous", window_ms=window_ms, stride_ms=stride_ms, bin_ms=bin_ms)
    recording = sessions[0].recording
    # Observed stretches are the trials here (obs_intervals); windows never cross a gap.
    expected = []
    for start_s, stop_s in zip(recording.trials["start_time"], recording.trials["stop_time"]):
        first, last = -(-round(start_s * 1000) // bin_ms), round(stop_s * 1000) // bin_ms
        expected += list(range(first, last - window_ms // bin_ms + 1, stride_ms // bin_ms))
    np.testing.assert_array_equal(dataset.windows[:, 1], expected)
    assert (dataset.windows[:, 2] == -1).all()
    for i in (0, 3, len(dataset) - 1):
        first_ms = int(dataset.windows[i, 1]) * bin_ms
        direct = np.zeros((window_ms // bin_ms, len(recording.spike_times)))
        for unit, times in enumerate(recording.spike_times):
            ms = np.floor(times * 1000).astype(int) - first_ms
            ms = ms[(ms >= 0) & (ms < window_ms)]
            np.add.at(direct[:, unit], ms // bin_ms, 1)
        np.testing.assert_array_equal(dataset[i]["spikes"].numpy(), direct)  # units already held-in first


def test_never_more_than_k_files_in_memory(files):
    dataset = WindowDataset(files, max_loaded=2)
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(dataset), 60):  # random access: the worst case for the cache
        dataset[int(i)]
    assert dataset.max_loaded_seen == 2 and len(dataset._cache) <= 2 and dataset.loads > 3
    one = WindowDataset(files, max_loaded=1)
    n_windows = sum(len(batch) for batch in one.batches(batch_size=5, epoch=2))
    assert n_windows == len(one) and one.loads == len(files) and one.max_loaded_seen == 1  # each file read once


def test_collate_pads_units_like_stack_sessions(files, sessions):
    dataset = WindowDataset(files)
    firsts = [int(np.flatnonzero(dataset.windows[:, 0] == f)[0]) for f in range(3)]
    batch = collate_windows([dataset[i] for i in firsts])
    widths = [s.spikes.shape[2] for s in sessions]
    assert isinstance(batch, WindowBatch) and isinstance(batch, Batch)
    assert batch.spikes.shape == (3, 140, max(widths)) and batch.behaviour.shape == (3, 140, 2)
    for row, width in enumerate(widths):
        assert (batch.spikes[row, :, width:] == 0).all() and (batch.units[row, width:] == -1).all()
        assert (batch.unit_areas[row, width:] == -1).all() and not batch.heldout[row, width:].any()
        assert (batch.units[row, :width] >= 0).all() and (batch.unit_areas[row, :width] >= 0).all()
    np.testing.assert_array_equal(batch.session, [0, 1, 2])
    assert batch[1:].spikes.shape[0] == 2 and batch[1:].condition.shape == (2,)  # slices every field


def test_vocabularies_extend_without_changing_the_old_one(files):
    first = WindowDataset(files[:2])
    n_units = len(first.unit_vocab)
    both = WindowDataset(files[1:], unit_vocab=first.unit_vocab, session_vocab=first.session_vocab)
    assert len(first.unit_vocab) == n_units and len(first.session_vocab) == 2
    np.testing.assert_array_equal(both.unit_index[0], first.unit_index[1])  # the shared session keeps its ids
    assert both.unit_index[1].min() == n_units and int(both.session_ids[1]) == 2
    assert both.unit_vocab.tokens[:n_units] == first.unit_vocab.tokens  # old ids kept, new ones appended
    assert UnitVocabulary.token("session_00", 1011) == "session_00/1011" and "session_09/1011" not in both.unit_vocab
    with pytest.raises(KeyError, match="not in the vocabulary"):
        first.unit_vocab.index(["nobody/1"])


def test_missing_and_corrupt_files_are_named(files, tmp_path):
    missing = tmp_path / "nowhere_desc-train.nwb"
    with pytest.raises(MazeDataError, match="does not exist") as caught:
        WindowDataset([files[0], missing])
    assert str(missing) in str(caught.value)
    truncated = tmp_path / "cut" / files[0].name
    truncated.parent.mkdir()
    shutil.copy(files[0], truncated)
    with open(truncated, "r+b") as f:
        f.truncate(truncated.stat().st_size // 2)
    with pytest.raises(MazeDataError, match="corrupt") as caught:
        WindowDataset([truncated])
    assert str(truncated) in str(caught.value)
    no_onset = tmp_path / "onset" / files[0].name
    no_onset.parent.mkdir()
    shutil.copy(files[0], no_onset)
    with h5py.File(no_onset, "r+") as f:
        del f["intervals/trials/move_onset_time"]
    with pytest.raises(MazeDataError, match="move_onset_time"):
        WindowDataset([no_onset])
    assert len(WindowDataset([no_onset], mode="continuous", window_ms=200)) > 0  # continuous needs no trials


def test_damage_found_when_reading_is_named(files, tmp_path):
    """A file whose tables are fine but whose spike data is damaged fails when it is read, naming it."""
    damaged = tmp_path / files[0].name
    shutil.copy(files[0], damaged)
    dataset = WindowDataset([damaged])
    with h5py.File(damaged, "r+") as f:
        del f["units/spike_times"]
    with pytest.raises(MazeDataError) as caught:
        dataset[0]
    assert str(damaged) in str(caught.value) and "spike_times" in str(caught.value)


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="sliding"), "mode"),
    (dict(bin_ms=7), "bin_ms"),
    (dict(mode="continuous"), "window_ms"),
    (dict(mode="continuous", window_ms=300, stride_ms=7), "stride_ms"),
    (dict(mode="continuous", window_ms=0), "window_ms"),
    (dict(align_ms=(450, -250)), "align_ms"),
    (dict(max_loaded=0), "max_loaded"),
])
def test_bad_arguments_are_named(files, kwargs, match):
    with pytest.raises(ValueError, match=match):
        WindowDataset(files, **kwargs)


def test_bad_file_lists_and_shards_are_named(files, tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        WindowDataset([])
    with pytest.raises(ValueError, match="duplicates"):
        WindowDataset([files[0], files[0]])
    same_name = tmp_path / "other" / files[0].name
    same_name.parent.mkdir()
    shutil.copy(files[0], same_name)
    with pytest.raises(ValueError, match="same session name"):
        WindowDataset([files[0], same_name])
    dataset = WindowDataset(files[:1])
    for rank, world_size in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match="rank"):
            dataset.shard(rank, world_size)
    with pytest.raises(ValueError, match="non-empty"):
        collate_windows([])


def test_held_in_units_come_first_whatever_the_file_order(files, tmp_path):
    """The models take held-in units first: a file listing held-out units anywhere is reordered."""
    mixed = tmp_path / files[0].name
    shutil.copy(files[0], mixed)
    with h5py.File(mixed, "r+") as f:
        n = len(f["units/heldout"])
        flags = np.arange(n) % 3 == 0  # every third unit held out, interleaved
        f["units/heldout"][...] = flags
    original, reordered = WindowDataset(files[:1])[0], WindowDataset([mixed])[0]
    order = np.concatenate([np.flatnonzero(~flags), np.flatnonzero(flags)])
    np.testing.assert_array_equal(reordered["heldout"].numpy(), np.sort(flags))
    np.testing.assert_array_equal(reordered["spikes"].numpy(), original["spikes"].numpy()[:, order])
