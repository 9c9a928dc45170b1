"""Orbax checkpoints: async saves, keep-K, best-by-metric, torn-step skipping, any-mesh restore.

Layout of a MODEL_DIR (every step directory is an ordinary Orbax composite checkpoint):

    MODEL_DIR/config.json            the model's T5Config (`checkpoint_config.save_model_config`)
    MODEL_DIR/spiece.model           its SentencePiece vocabulary, when known (for HF export)
    MODEL_DIR/<step>/state/          the train state pytree; it always has a top-level `params`
    MODEL_DIR/<step>/data_state/     JSON: the input pipeline position (resume)
    MODEL_DIR/<step>/train_metrics/  JSON: metrics logged with the save (optional)
    MODEL_DIR/<step>/t5x_sbs_commit.json   our commit record: every file and its size
    MODEL_DIR/best/<step>/...        the best checkpoint by a validation metric (keep 1)

A step counts as complete only if Orbax finalised it (no tmp suffix, `_CHECKPOINT_METADATA`
present) and, when our commit record exists, every file it lists is there with its size. So a
directory truncated, emptied or left half-written by a killed process is skipped in favour of the
previous complete step. Restoring verifies every file's CRC-32 against the commit record
(`checkpoint_integrity`); a step that fails to restore for any reason is reported in one line
and the previous complete step restores instead. A failed async save raises `CheckpointError`
naming its step at the next call into the manager (`raise_if_save_failed`, every train step).
Beside it: `checkpoint_integrity` (commit records, torn steps), `checkpoint_config` (config.json,
spiece.model), `initial_params` (INITIAL_CHECKPOINT_PATH), `preemption` (SIGTERM -> save and stop).
"""
from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import pathlib
import threading
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from t5x_sbs.checkpoints.integrity import (  # noqa: F401  (re-exported: one place for completeness)
    COMMIT_FILE, ORBAX_STEP_METADATA, CheckpointError, complete_steps, incomplete_reason, remove_leftovers,
    set_aside, write_commit_record)
from t5x_sbs.checkpoints.model_files import jsonable

log = logging.getLogger(__name__)

BEST_DIR = "best"
METRICS_ITEM = "train_metrics"  # Orbax reserves "metrics" for its own best_fn bookkeeping


# ----------------------------------------------------------------------------- manager
def _metric(value: Any) -> Any:
    """Metric values as JSON: scalars (also 0-d arrays) become floats, strings stay."""
    if isinstance(value, (str, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return jsonable(value)


def _params_tree(state: Any) -> Any:
    """The state item always carries a top-level `params`; wrap bare params so it does."""
    if isinstance(state, dict) and "params" in state:
        return state
    if hasattr(state, "params") and not isinstance(state, dict):
        return state
    return {"params": state}


class CheckpointManager:
    """Our face of `orbax.checkpoint.CheckpointManager`: see the module docstring for the layout.

    `save` respects `save_interval_steps` unless `force`; saves are async (call
    `wait_until_finished` or `close` before reading them back). `latest_step` is the last
    complete step. The best checkpoint lives apart in `best/` and is never removed by keep-K.
    """

    def __init__(self, directory, *, save_interval_steps: int = 1, max_to_keep: int | None = None,
                 async_save: bool = True, _is_best: bool = False):
        self.directory = pathlib.Path(directory).absolute()
        self._async = async_save
        self._pending: list[int] = []  # steps saved whose commit record is not yet written
        self._commits: list[concurrent.futures.Future] = []  # commit records being checksummed
        self._committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ckpt-commit")
        self._unusable: set[int] = set()  # steps that failed to restore: set aside before re-saving
        self._watcher: threading.Thread | None = None
        self._failed_save: str | None = None  # a failed async save not yet raised
        self._failed_step: int | None = None
        self._reported_failures: set[int] = set()
        self._max_to_keep = max_to_keep
        self._is_best = _is_best
        self._best: CheckpointManager | None = None
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=save_interval_steps,
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=self._item_handlers())
        self._save_interval = save_interval_steps
        if max_to_keep is not None:
            self._apply_keep()

    def _apply_keep(self) -> None:
        """Deletes the oldest complete steps beyond `max_to_keep`. Orbax deletes them only on its
        finalize thread after a save, so a process killed between a save's commit and that
        deletion left one more, which a rerun that saves nothing (only the final test) kept."""
        complete, listed = complete_steps(self.directory), set(self._manager.all_steps())
        for step in complete[: max(0, len(complete) - self._max_to_keep)]:
            if step in listed:
                log.info("keep %d: deleting checkpoint step %d under %s", self._max_to_keep, step, self.directory)
                self._manager.delete(step)

    @staticmethod
    def _item_handlers():
        return {"state": ocp.PyTreeCheckpointHandler(), "data_state": ocp.JsonCheckpointHandler(),
                METRICS_ITEM: ocp.JsonCheckpointHandler()}

    # -- saving
    def _commit_finished(self) -> None:
        """Checksums the saves Orbax has finalised into their commit records, on a background
        thread (called after waiting on the saves). A process killed before a record is written
        leaves a finalised step without one: still complete, unverified. A pending step Orbax
        did not finalise is a failed save: CheckpointError naming it."""
        pending, self._pending = self._pending, []
        for step in pending:
            step_dir = self.directory / str(step)
            if step in self._reported_failures:
                continue
            if not (step_dir / ORBAX_STEP_METADATA).is_file():
                self._failed_save = self._failed_save or (
                    f"checkpoint save of step {step} under {self.directory} failed (see the Orbax error "
                    f"logged above); last complete step: {self.latest_step()}")
            elif jax.process_index() == 0:
                self._commits.append(self._committer.submit(write_commit_record, step_dir))
        self.raise_if_save_failed()

    def _watch(self, step: int) -> None:
        """Logs a failed async save as soon as its background write ends, at the step it fails."""
        while self._manager.is_saving_in_progress():
            time.sleep(0.2)
        if not (self.directory / str(step) / ORBAX_STEP_METADATA).is_file() and step in self._pending:
            self._failed_save = (f"checkpoint save of step {step} under {self.directory} failed (see the Orbax "
                                 f"error logged above)")
            self._failed_step = step
            log.error("%s", self._failed_save)

    def raise_if_save_failed(self) -> None:
        """Raises CheckpointError if an async save has failed (cheap; the train loop calls it each step)."""
        if self._failed_save is not None:
            message, self._failed_save = self._failed_save, None
            if self._failed_step is not None:
                self._reported_failures.add(self._failed_step)
            raise CheckpointError(message)

    def _set_aside_torn(self, step: int) -> None:
        """A torn (or unrestorable) dir for `step` would block re-saving it after a resume: move it aside."""
        step_dir = self.directory / str(step)
        reason = incomplete_reason(step_dir) if step_dir.exists() else None
        if step_dir.exists() and (reason is not None or step in self._unusable):
            if jax.process_index() == 0:
                set_aside(step_dir, reason or "failed to restore")
            self._unusable.discard(step)
            self._manager.reload()

    def save(self, step: int, state: Any, *, data_state: dict | None = None,
             metrics: dict | None = None, force: bool = False) -> bool:
        """Saves (async) when `step` is on the interval or `force`; True if a save started."""
        step = int(step)
        if not force and step % self._save_interval != 0:
            return False
        self.wait_until_finished()
        if step in complete_steps(self.directory) and step not in self._unusable:
            return False  # already saved (e.g. a forced save right after an interval save)
        self._set_aside_torn(step)
        if jax.process_index() == 0:  # the keep policy for what Orbax's does not see
            remove_leftovers(self.directory)
        items = {"state": ocp.args.PyTreeSave(_params_tree(state)),
                 "data_state": ocp.args.JsonSave(dict(data_state or {}))}
        if metrics is not None:
            items[METRICS_ITEM] = ocp.args.JsonSave({k: _metric(v) for k, v in metrics.items()})
        saved = self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        self._pending.append(step)
        if not self._async:
            self._commit_finished()
        elif jax.process_index() == 0:
            self._watcher = threading.Thread(target=self._watch, args=(step,), daemon=True, name="ckpt-watch")
            self._watcher.start()
        return bool(saved)

    def save_best(self, step: int, state_or_params: Any, metric_value: float, mode: str = "max",
                  *, metric_name: str = "metric") -> bool:
        """Saves into best/ when `metric_value` beats the best so far; True if it did."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        value = float(metric_value)
        if math.isnan(value):
            return False
        best = self._best_manager()
        previous = best.best_metric()
        if previous is not None:
            if previous.get("mode", mode) != mode:
                raise ValueError(f"best/ was kept with mode={previous['mode']!r}, not {mode!r}")
            old = previous["value"]
            if (value <= old) if mode == "max" else (value >= old):
                return False
        metrics = {"value": value, "mode": mode, "name": metric_name, "step": int(step)}
        return best.save(step, state_or_params, metrics=metrics, force=True)

    def _best_manager(self) -> "CheckpointManager":
        if self._is_best:
            raise ValueError("the best/ manager keeps no best of its own")
        if self._best is None:
            self._best = CheckpointManager(self.directory / BEST_DIR, save_interval_steps=1,
                                           max_to_keep=1, async_save=self._async, _is_best=True)
        return self._best

    # -- reading
    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def all_steps(self) -> list[int]:
        """Complete steps, without those that failed to restore in this run."""
        return [s for s in complete_steps(self.directory) if s not in self._unusable]

    def best_step(self) -> int | None:
        if not (self.directory / BEST_DIR).is_dir() and self._best is None:
            return None
        return self._best_manager().latest_step()

    def best_metric(self) -> dict | None:
        """For a best/ manager: the metrics JSON of its kept step."""
        step = self.latest_step()
        if step is None:
            return None
        return self.metrics(step)

    def metrics(self, step: int) -> dict | None:
        return read_json_item(self.directory / str(step), METRICS_ITEM)

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """(state, data_state) of `step` (default: the latest complete), placed on the shardings
        of `abstract_state` (a pytree of jax.ShapeDtypeStruct with .sharding), whatever mesh
        the checkpoint was saved from. Leaves missing from `abstract_state` are not read."""
        self.wait_until_finished()
        if step is not None:
            return restore_step_dir(self.directory / str(self._resolve(step)), abstract_state)
        tried = []
        for candidate in reversed(self.all_steps()):
            try:
                return restore_step_dir(self.directory / str(candidate), abstract_state)
            except Exception as e:  # corrupt bytes, unreadable arrays, ...: the previous step
                reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                tried.append(f"step {candidate} ({reason})")
                log.warning("checkpoint step %d under %s cannot be restored (%s); falling back to the "
                            "previous complete step", candidate, self.directory, reason)
                self._unusable.add(candidate)
        raise CheckpointError(f"no usable checkpoint under {self.directory}"
                              + (f": tried {'; '.join(tried)}" if tried else ""))

    def restore_best(self, abstract_state: Any) -> tuple[Any, dict]:
        step = self.best_step()
        if step is None:
            raise FileNotFoundError(f"no best checkpoint under {self.directory / BEST_DIR}")
        return self._best_manager().restore(abstract_state, step)

    def _resolve(self, step: int | None) -> int:
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(f"no complete checkpoint under {self.directory}")
            return step
        reason = incomplete_reason(self.directory / str(step))
        if reason is not None:
            raise FileNotFoundError(f"checkpoint {self.directory / str(step)} is not complete: {reason}")
        return int(step)

    def wait_until_finished(self) -> None:
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # Orbax re-raises a failed background save here
            failed = [s for s in self._pending if not (self.directory / str(s) / ORBAX_STEP_METADATA).is_file()]
            self._pending = [s for s in self._pending if s not in failed]
            if not set(failed) <= self._reported_failures:  # not yet raised by raise_if_save_failed
                self._reported_failures.update(failed)
                self._failed_save = None
                raise CheckpointError(f"checkpoint save of step(s) {failed} under {self.directory} failed: "
                                      f"{type(e).__name__}: {e}") from e
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        commits, self._commits = self._commits, []
        for future in commits:  # usually long done: checksums run while training goes on
            future.result()
        self._commit_finished()
        for future in self._commits:
            future.result()
        self._commits = []
        if self._best is not None:
            self._best.wait_until_finished()

    def close(self) -> None:
        try:
            self.wait_until_finished()
        finally:
            self._manager.close()
            self._committer.shutdown(wait=True)
            if self._best is not None:
                self._best.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- step dirs
def restore_step_dir(step_dir: str | os.PathLike, abstract_state: Any) -> tuple[Any, dict]:
    """Restores one step directory (ours) onto the shardings in `abstract_state`."""
    step_dir = pathlib.Path(step_dir).absolute()
    reason = incomplete_reason(step_dir, verify=True)
    if reason is not None:
        raise FileNotFoundError(f"checkpoint {step_dir} is not complete: {reason}")
    target = _params_tree(abstract_state)
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
        state = ckptr.restore(step_dir / "state", args=ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
    data_state = read_json_item(step_dir, "data_state") or {}
    if target is not abstract_state:  # bare params were asked for: hand back bare params
        state = state["params"]
    return state, data_state


def read_json_item(step_dir: str | os.PathLike, item: str) -> dict | None:
    """A JSON item of a step (data_state, train_metrics), or None if the step has none."""
    item_dir = pathlib.Path(step_dir).absolute() / item
    if not item_dir.is_dir():
        return None
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
        return ckptr.restore(item_dir, args=ocp.args.JsonRestore())


def state_metadata(step_dir: str | os.PathLike) -> Any:
    """The saved tree of the state item: shapes and dtypes, no array data read."""
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
        return ckptr.metadata(pathlib.Path(step_dir).absolute() / "state").item_metadata.tree


def read_state_leaf(step_dir: str | os.PathLike, path: tuple[str, ...]):
    """One array of a step's state as a host numpy array (for streaming conversion: only this
    tensor is read into memory). `path` is the key path, e.g. ("params", "encoder", ...)."""
    target: Any = ocp.RestoreArgs(restore_type=np.ndarray)
    for key in reversed(path):
        target = {key: target}
    item = jax.tree.map(lambda _: 0, target, is_leaf=lambda x: isinstance(x, ocp.RestoreArgs))
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
        tree = ckptr.restore(pathlib.Path(step_dir).absolute() / "state", args=ocp.args.PyTreeRestore(
            item, restore_args=target, partial_restore=True))
    for key in path:
        tree = tree[key]
    return np.asarray(tree)


def resolve_step_dir(path: str | os.PathLike) -> pathlib.Path:
    """A step dir as given, or the latest complete step of a MODEL_DIR (or of its best/)."""
    path = pathlib.Path(path).absolute()
    if (path / "state").is_dir():
        reason = incomplete_reason(path)
        if reason is not None:
            raise FileNotFoundError(f"checkpoint {path} is not complete: {reason}")
        return path
    steps = complete_steps(path)
    if not steps:
        raise FileNotFoundError(f"{path}: neither a checkpoint step dir nor a dir holding complete steps")
    return path / str(steps[-1])
