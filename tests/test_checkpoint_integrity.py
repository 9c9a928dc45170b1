"""Checkpoints that prove themselves: CRC-32 per file verified on restore, fallback to the previous
complete step, failed async saves reported, torn/tmp folders removed by the keep policy."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from t5x_sbs import checkpoints as ck

sys.path.insert(0, os.path.dirname(__file__))
from test_checkpoints import _save_steps, abstract_of, assert_tree_equal, make_state, single_device  # noqa: E402

pytestmark = pytest.mark.fault


def _array_files(step_dir):
    return sorted((p for p in (step_dir / "state").rglob("*") if p.is_file() and "d" in p.parent.name
                   and p.stat().st_size > 256), key=lambda p: -p.stat().st_size)


def _flip_inside(path, count=64):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    size = path.stat().st_size
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size


def test_commit_record_carries_a_checksum_of_every_file(tmp_path):
    _save_steps(tmp_path, [1])
    record = json.loads((tmp_path / "1" / ck.COMMIT_FILE).read_text())
    files = [p for p in (tmp_path / "1").rglob("*") if p.is_file() and p.name != ck.COMMIT_FILE]
    assert record["checksum"] == "crc32" and len(record["files"]) == len(files)
    assert all(set(v) == {"size", "crc32"} for v in record["files"].values())


def test_flipped_bytes_are_detected_and_the_previous_step_restores(tmp_path, caplog):
    _save_steps(tmp_path, [1, 2])
    victim = _array_files(tmp_path / "2")[0]
    _flip_inside(victim)
    assert ck.incomplete_reason(tmp_path / "2") is None  # sizes still match: listing cannot tell
    assert "CRC-32" in ck.incomplete_reason(tmp_path / "2", verify=True)
    mgr = ck.CheckpointManager(tmp_path, save_interval_steps=1, max_to_keep=5)
    with caplog.at_level("WARNING"):
        state, data_state = mgr.restore(abstract_of(make_state(), single_device))
    assert data_state == {"pos": 1}
    assert_tree_equal(state, make_state(1, 1))
    lines = [r.getMessage() for r in caplog.records if "cannot be restored" in r.getMessage()]
    assert len(lines) == 1 and "step 2" in lines[0] and "CRC-32" in lines[0]
    assert mgr.latest_step() == 1
    # the resumed run re-saves step 2 over the corrupt one (set aside, then removed by the keep policy)
    assert mgr.save(2, make_state(22, 2), data_state={"pos": 2})
    mgr.save(3, make_state(3, 3), data_state={"pos": 3})
    mgr.close()
    assert not [p for p in tmp_path.iterdir() if ".torn-" in p.name]
    state, _ = ck.restore_step_dir(tmp_path / "2", abstract_of(make_state(), single_device))
    assert_tree_equal(state, make_state(22, 2))


def test_unreadable_newest_step_falls_back_and_none_left_is_a_clear_error(tmp_path):
    """Garbage of the right size with no commit record (killed before it) fails in Orbax itself."""
    _save_steps(tmp_path, [1, 2])
    for step in (1, 2):
        (tmp_path / str(step) / ck.COMMIT_FILE).unlink()
    for p in _array_files(tmp_path / "2"):
        p.write_bytes(os.urandom(p.stat().st_size))
    mgr = ck.CheckpointManager(tmp_path, save_interval_steps=1, max_to_keep=5)
    state, data_state = mgr.restore(abstract_of(make_state(), single_device))
    assert data_state == {"pos": 1}
    assert_tree_equal(state, make_state(1, 1))
    mgr.close()
    for p in _array_files(tmp_path / "1"):
        p.write_bytes(os.urandom(p.stat().st_size))
    mgr = ck.CheckpointManager(tmp_path, save_interval_steps=1, max_to_keep=5)
    with pytest.raises(ck.CheckpointError, match=r"no usable checkpoint under .*: tried step 2 \(.*; step 1 \("):
        mgr.restore(abstract_of(make_state(), single_device))
    mgr.close()


def test_keep_policy_removes_torn_and_orbax_tmp_folders(tmp_path):
    _save_steps(tmp_path, [1])
    (tmp_path / "5.orbax-checkpoint-tmp-99").mkdir()
    (tmp_path / "4.torn-123").mkdir()
    with ck.CheckpointManager(tmp_path, save_interval_steps=1, max_to_keep=5) as mgr:
        mgr.save(2, make_state(2, 2), data_state={"pos": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]


def test_a_failed_async_save_is_reported_naming_its_step(tmp_path, monkeypatch, caplog):
    """The background write fails (disk full): logged when it fails, raised at the next call."""
    import time

    import orbax.checkpoint as ocp

    mgr = ck.CheckpointManager(tmp_path, save_interval_steps=1, max_to_keep=5)
    mgr.save(1, make_state(1, 1), data_state={"pos": 1})
    mgr.wait_until_finished()
    real = ocp.PyTreeCheckpointHandler.async_save

    class DiskFull:
        def result(self, timeout=None):
            time.sleep(0.2)
            raise OSError(28, "No space left on device")

    async def broken(self, *args, **kwargs):
        return list(await real(self, *args, **kwargs) or []) + [DiskFull()]

    monkeypatch.setattr(ocp.PyTreeCheckpointHandler, "async_save", broken)
    with caplog.at_level("ERROR"):
        assert mgr.save(2, make_state(2, 2), data_state={"pos": 2})  # returns while the write runs
        mgr._watcher.join(timeout=30)
    assert any("checkpoint save of step 2" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    with pytest.raises(ck.CheckpointError, match="checkpoint save of step 2 .* failed"):
        mgr.raise_if_save_failed()
    monkeypatch.setattr(ocp.PyTreeCheckpointHandler, "async_save", real)
    assert mgr.latest_step() == 1
    np.testing.assert_array_equal(mgr.restore(abstract_of(make_state(), single_device))[1]["pos"], 1)
    mgr.close()
