"""keep-K holds after a kill between a save's commit and Orbax's deletion of the old steps, and a
SIGTERM while the last save is finalised stops the run cleanly (saved, keep-K, no final test)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from t5x_sbs import checkpoints as ck
from test_checkpoints import REPO, make_state


def test_a_rerun_that_saves_nothing_still_keeps_k(tmp_path):
    mgr = ck.CheckpointManager(tmp_path, save_interval_steps=1, max_to_keep=2, async_save=False)
    mgr._manager._checkpoint_deleter.delete_steps = lambda steps: None  # killed before Orbax deleted
    for step in (1, 2, 3):
        mgr.save(step, make_state(step, step))
    mgr.close()
    assert ck.complete_steps(tmp_path) == [1, 2, 3]  # what such a kill leaves: keep + 1
    rerun = ck.CheckpointManager(tmp_path, save_interval_steps=1, max_to_keep=2)
    assert rerun.all_steps() == [2, 3] and ck.complete_steps(tmp_path) == [2, 3]
    rerun.close()
    reader = ck.CheckpointManager(tmp_path)  # no keep given (eval, conversion): deletes nothing
    assert reader.all_steps() == [2, 3]
    reader.close()


# The run's own SIGTERM arrives while the final save is being finalised (the last wait of the run).
_PREEMPT_AT_THE_END = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, "tests")
    from t5x_sbs import checkpoints
    from test_trainer_loop import run_train, svamp_bindings

    wait = checkpoints.CheckpointManager.wait_until_finished
    def wait_with_sigterm(self):
        if not self._is_best and 5 in self._pending and not getattr(self, "signalled", False):
            self.signalled = True
            os.kill(os.getpid(), signal.SIGTERM)
        return wait(self)
    checkpoints.CheckpointManager.wait_until_finished = wait_with_sigterm
    run_train(svamp_bindings(sys.argv[1], sys.argv[2], 5, EVAL_EVERY=2, CHECKPOINT_EVERY=2,
                             **{"RunConfig.keep_checkpoints": 2, "RunConfig.test_batches": 1}))
""")


@pytest.mark.fault
@pytest.mark.shared_data
def test_sigterm_while_the_last_save_is_finalised(tmp_path, shared_data):
    model_dir = tmp_path / "m"
    done = subprocess.run([sys.executable, "-c", _PREEMPT_AT_THE_END, str(model_dir), str(shared_data)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "preempted: step 5 saved, final test skipped (a rerun runs it)" in done.stderr
    assert ck.complete_steps(model_dir) == [4, 5]
    assert not (model_dir / "test_results.json").exists()
    assert not [p for p in os.listdir(model_dir) if ".orbax-checkpoint-tmp" in p or ".torn-" in p]
