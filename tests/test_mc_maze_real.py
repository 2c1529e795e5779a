"""The real NLB mc_maze_small test file (DANDI 000140), read through the loader's own path.

The file lives read-only in ../shared/data/mc_maze_small_real/ (see its README); tests copy it.
Facts asserted here come from the README: 100 test trials, 107 held-in units (ids 1011 ... 2861),
52 on the PMd array (1xxx) and 55 on the M1 array (2xxx), units/electrodes holding per-array
channel numbers for both arrays.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from tutorial_utils.data import MazeDataError, load_mc_maze, mc_maze, synthetic_maze
from tutorial_utils.data.maze_nwb import REQUIRED_TEST, check_nwb, unit_areas
from tutorial_utils.yardstick import REAL_FILE as REAL_FILE_IN_SHARED, find_real_file

def _find_real_file() -> Path:
    try:
        return find_real_file()
    except FileNotFoundError:
        return Path(REAL_FILE_IN_SHARED)


REAL_FILE = _find_real_file()
NAME = "mc_maze_small"

pytestmark = pytest.mark.skipif(not REAL_FILE.exists(), reason=f"real NLB test file not found at {REAL_FILE}")


@pytest.fixture(scope="module")
def real_test(tmp_path_factory):
    copy = tmp_path_factory.mktemp("real") / REAL_FILE.name
    shutil.copy(REAL_FILE, copy)
    copy.chmod(0o644)
    return copy


@pytest.fixture(scope="module")
def real_ids(real_test):
    with h5py.File(real_test, "r") as f:
        return f["units/id"][()]


def test_check_nwb_accepts_the_real_test_file(real_test, real_ids):
    check_nwb(real_test, REQUIRED_TEST)
    assert len(real_ids) == 107 and real_ids[0] == 1011 and real_ids[-1] == 2861


def test_unit_areas_come_from_the_unit_ids(real_test, real_ids):
    areas = unit_areas(real_test)
    assert list(areas) == real_ids.tolist()
    labels = np.array(list(areas.values()))
    assert (labels == "PMd").sum() == 52 and (labels == "M1").sum() == 55
    np.testing.assert_array_equal(labels == "PMd", real_ids // 1000 == 1)


def test_unit_areas_error_when_neither_ids_nor_electrodes_tell(real_test, tmp_path):
    broken = tmp_path / "no_areas.nwb"
    shutil.copy(real_test, broken)
    with h5py.File(broken, "r+") as f:
        f["units/id"][...] = np.arange(5000, 5000 + len(f["units/id"]))
        names = f["general/extracellular_ephys/electrodes/group_name"]
        names[...] = np.array([b"electrode_group_A"] * len(names), dtype=object)
    with pytest.raises(MazeDataError, match="1xxx") as caught:
        unit_areas(broken)
    assert str(broken) in str(caught.value)


def test_nwbdataset_reads_the_real_test_file(real_test, real_ids):
    from nlb_tools.nwb_interface import NWBDataset

    dataset = NWBDataset(str(real_test))
    assert (dataset.trial_info["split"] == "test").sum() == 100
    np.testing.assert_array_equal(np.asarray(dataset.data["spikes"].columns), real_ids)
    assert "heldout_spikes" not in dataset.data.columns.get_level_values(0)


@pytest.fixture(scope="module")
def real_beside_stand_in(real_test, real_ids, tmp_path_factory):
    """A data folder as download_session leaves it: the real test file beside a train file.

    No real train file is available offline, so the train file is the stand-in's with its
    held-in unit ids renamed to the real file's (the stand-in has the same 52 PMd / 55 M1
    held-in units, PMd first); held-out units get unused ids of their own array.
    """
    stand_in = tmp_path_factory.mktemp("stand_in")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_mc_maze(NAME, 5, data_dir=stand_in, synthetic=True)
    root = tmp_path_factory.mktemp("real_layout")
    folder = mc_maze.session_dir(NAME, data_dir=root)
    train_path, test_path = mc_maze.dandi_paths(NAME)
    (folder / "sub-Jenkins").mkdir(parents=True)
    shutil.copy(mc_maze.session_dir(NAME, synthetic=True, data_dir=stand_in) / train_path, folder / train_path)
    shutil.copy(real_test, folder / test_path)
    with h5py.File(folder / train_path, "r+") as f:
        ids, heldout = f["units/id"][()], f["units/heldout"][()]
        assert (ids[~heldout] // 1000 == real_ids // 1000).all()
        new_ids = ids.copy()
        new_ids[~heldout] = real_ids
        new_ids[heldout] = ids[heldout] // 1000 * 1000 + 999 - np.arange(heldout.sum())
        assert len(set(new_ids)) == len(new_ids)
        f["units/id"][...] = new_ids
    return root


@pytest.mark.parametrize("include_test", [False, True])
def test_loading_with_the_real_test_file(real_beside_stand_in, real_ids, include_test):
    session = load_mc_maze(NAME, 5, data_dir=real_beside_stand_in, synthetic=False, download=False,
                           include_test=include_test)
    assert len(session.trials("train")) == 75 and len(session.trials("val")) == 25
    assert len(session.trials("test")) == (100 if include_test else 0)
    np.testing.assert_array_equal(session.heldin_unit_id, real_ids)
    assert (session.heldin_area == "PMd").sum() == 52 and (session.heldin_area == "M1").sum() == 55
    per_trial = [session.heldin_spikes, session.heldout_spikes, session.heldin_forward, session.heldout_forward,
                 session.hand_vel, session.hand_pos, session.condition, session.split, session.trial_id]
    assert {len(array) for array in per_trial} == {len(session.split)}


def test_real_test_trials_hold_their_own_spikes_only(real_beside_stand_in, real_test):
    """Each test trial's window holds exactly its own spikes (counted here straight from the
    file), and its forward window, which NLB withholds, is NaN: never another trial's bins."""
    session = load_mc_maze(NAME, 5, data_dir=real_beside_stand_in, synthetic=False, download=False,
                           include_test=True)
    test = session.trials("test")
    np.testing.assert_array_equal(session.trial_id[test], np.arange(100))
    with h5py.File(real_test, "r") as f:
        onsets = f["intervals/trials/move_onset_time"][()]
        ends = f["units/spike_times_index"][()]
        times = np.split(f["units/spike_times"][()], ends[:-1])
    expected = np.array([[((t >= onset - 0.25) & (t < onset + 0.45)).sum() for t in times] for onset in onsets])
    np.testing.assert_array_equal(session.heldin_spikes[test].sum(axis=1), expected)
    assert np.isfinite(session.heldin_spikes[test]).all()
    assert np.isnan(session.heldin_forward[test]).all() and np.isnan(session.heldout_forward[test]).all()
    assert np.isnan(session.heldout_spikes[test]).all() and np.isnan(session.hand_vel[test]).all()


def test_stand_in_test_file_has_the_real_layout(real_test, tmp_path):
    """The stand-in's test file has the real one's groups, datasets, dtypes and trial columns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_mc_maze(NAME, 5, data_dir=tmp_path, synthetic=True)
    stand_in = mc_maze.session_dir(NAME, synthetic=True, data_dir=tmp_path) / mc_maze.dandi_paths(NAME)[1]

    def layout(path):
        items = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, node: items.__setitem__(
                name, node.dtype.kind if isinstance(node, h5py.Dataset) else "group"))
            columns = [str(c) for c in f["intervals/trials"].attrs["colnames"]]
            values = {"electrode_x": f["general/extracellular_ephys/electrodes/x"][()],
                      "electrode_ids": f["general/extracellular_ephys/electrodes/id"][()],
                      "first_group": f["general/extracellular_ephys/electrodes/group_name"][0],
                      "trial_length": np.diff(np.stack([f["intervals/trials/start_time"][()],
                                                        f["intervals/trials/stop_time"][()]]), axis=0),
                      "unit_electrodes_max": f["units/electrodes"][()].max()}
        # Namespace specifications differ by pynwb version, and the stand-in names no people.
        skip = ("specifications", "general/experimenter", "general/institution", "general/lab",
                "general/related_publications")
        return {k: v for k, v in items.items() if not k.startswith(skip)}, columns, values

    real_items, real_columns, real_values = layout(real_test)
    stand_items, stand_columns, stand_values = layout(stand_in)
    assert stand_items == real_items
    assert stand_columns == real_columns
    assert np.isnan(stand_values["electrode_x"]).all() and np.isnan(real_values["electrode_x"]).all()
    np.testing.assert_array_equal(stand_values["electrode_ids"], real_values["electrode_ids"])
    assert stand_values["first_group"] == real_values["first_group"]
    np.testing.assert_allclose(stand_values["trial_length"], 0.7)
    np.testing.assert_allclose(real_values["trial_length"], 0.7)
    assert stand_values["unit_electrodes_max"] < 96 and real_values["unit_electrodes_max"] < 96
    assert synthetic_maze.TEST_GAP_MS == 100
