"""Reading the tasks' SeqIO cache (`t5x-sbs cache-tasks`, Apache Beam) back in a training run.

The label, rationale and pretraining tasks carry a `seqio.CacheDatasetPlaceholder` after their
deterministic preprocessing (rows and tokens). `t5x-sbs cache-tasks` runs that part on Beam and
writes TFRecords into `--output_cache_dir/<task>/`; a run with `RunConfig.use_cached = True` and
`tasks.config.cache_dirs.dirs = [that dir]` reads them instead (length-dependent steps such as
`append_eos_after_trim` and span corruption still run after the cache, as uncached).

Two guarantees on top of SeqIO's:
  - order: Beam writes the rows globally shuffled; the cache keeps SeqIO's provenance (source
    shard, index within it) and `in_source_order` puts the rows back in the uncached order, so a
    run from the cache gets the same batches as an uncached run with the same seed;
  - settings: the cache's COMPLETED file records what shaped its tokens (`settings()`: the
    vocabulary's hash, prefixes, data fraction, rationale coverage, teacher files and reading);
    reading it under different settings is an error naming them, never silently other tokens.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import seqio
import tensorflow as tf
from absl import logging

from t5x_sbs.tasks import config, pretrain

# seqio.beam_utils' provenance keys (that module imports apache_beam, so not imported here).
SHARD_KEY, INDEX_KEY = "provenance/source_shard_index", "provenance/index_within_shard"
_SETTINGS_KEY = "t5x_sbs_settings"


def _sha256(path: str) -> str:
    with tf.io.gfile.GFile(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def settings() -> dict:
    """The configuration that decides a cached row's content (read now from gin / tasks.config)."""
    return {"vocabulary_sha256": _sha256(config.vocabulary_path()),
            "vocabulary_extra_ids": config.vocabulary_extra_ids(),
            "prefixes": config.prefixes(),
            "data_options": dataclasses.asdict(config.data_options()),
            "teacher_files": config.teacher_files(),
            "teacher_coverage": config.teacher_coverage(),
            "teacher_reading": dataclasses.asdict(config.teacher_reading()),
            "tfds_data_dirs": sorted(config.tfds_data_dirs()),
            "pretrain_validation_fraction": pretrain.options().validation_fraction}


def completed_contents() -> str:
    """What `t5x-sbs cache-tasks` writes into each task's COMPLETED file."""
    return json.dumps({_SETTINGS_KEY: settings()}, sort_keys=True)


def use_cache_dirs() -> list[str]:
    """Adds `tasks.config.cache_dirs` to SeqIO's global cache directories; returns them."""
    dirs = config.cache_dirs()
    seqio.add_global_cache_dirs(dirs)
    return dirs


def prepare_cached_read(task: seqio.Task) -> bool:
    """Before `task.get_dataset(use_cached=True)`: True when the task reads from its cache (found in
    `tasks.config.cache_dirs`, written under the current settings); False for a task that cannot
    be cached (it is then built on the fly, logged); a missing or mismatched cache raises."""
    if not task.supports_caching:
        logging.warning("%s has no cache placeholder: built on the fly although use_cached is set", task.name)
        return False
    dirs = use_cache_dirs()
    if not task.cache_dir:
        raise FileNotFoundError(
            f"use_cached: no cache of task {task.name!r} in {seqio.utils.get_global_cache_dirs()} "
            f"(tasks.config.cache_dirs.dirs = {dirs}); write one with "
            f"`t5x-sbs cache-tasks --tasks {task.name} --output_cache_dir DIR` and the run's gin")
    with tf.io.gfile.GFile(os.path.join(task.cache_dir, "COMPLETED")) as f:
        text = f.read().strip()
    try:
        recorded = json.loads(text)[_SETTINGS_KEY]
    except (ValueError, KeyError, TypeError):
        logging.warning("%s: the cache at %s records no t5x-sbs settings (not written by t5x-sbs cache-tasks): "
                        "its tokens are not checked against this run's vocabulary", task.name, task.cache_dir)
        return True
    now = json.loads(json.dumps(settings()))
    differ = sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))
    if differ:
        raise ValueError(f"use_cached: the cache of {task.name!r} at {task.cache_dir} was written with other "
                         f"settings ({', '.join(differ)}: cached {[recorded.get(k) for k in differ]}, now "
                         f"{[now.get(k) for k in differ]}); re-run `t5x-sbs cache-tasks --overwrite` with this run's gin")
    return True


def in_source_order(rows: list[dict]) -> list[dict]:
    """Cached rows back in the order the uncached task yields them (by their provenance), provenance
    keys dropped; rows of a cache without provenance are returned as read."""
    if rows and SHARD_KEY in rows[0] and INDEX_KEY in rows[0]:
        rows = sorted(rows, key=lambda r: (int(r[SHARD_KEY]), int(r[INDEX_KEY])))
    return [{k: v for k, v in r.items() if not k.startswith("provenance/")} for r in rows]
