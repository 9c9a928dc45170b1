"""Beam-cached tasks (issue 15): `t5x-sbs cache-tasks` caches real CQA tasks with the DirectRunner;
the trainer's input path reads exactly the uncached rows and batches back from the cache, a short
run trains from it, and a cache made under other settings (or none) is refused."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import seqio

from t5x_sbs import cli
from t5x_sbs.data.vocab import dataset_texts, train_sentencepiece
from t5x_sbs.tasks import cache
from t5x_sbs.trainer import configs, input_pipeline, train_loop
from trainer_fixtures import preempt_after

pytestmark = pytest.mark.shared_data

TASKS = ("cqa_label_gold", "cqa_rationale_llm")  # the members of cqa_sbs_gold
LENGTHS = {"inputs": 128, "targets": 64}
GIN_FILES = ["gin/models/t5_1_1/tiny.gin", "gin/runs/sbs.gin"]
STEPS = 3


@pytest.fixture(scope="module")
def cached(shared_data, tmp_path_factory):
    """(cache dir, the run's gin bindings) after `t5x-sbs cache-tasks` with the run's gin."""
    root = tmp_path_factory.mktemp("beam_cache")
    spm, cache_dir = str(root / "cqa.model"), str(root / "cache")
    train_sentencepiece(dataset_texts("cqa", str(shared_data)), spm, vocab_size=256)
    bindings = [f"MODEL_DIR = '{root / 'run'}'", "MIXTURE_OR_TASK_NAME = 'cqa_sbs_gold'", f"DATA_DIR = '{shared_data}'",
                f"SPM_PATH = '{spm}'", "tasks.config.data_options.fraction = 0.05",  # 405 train examples
                f"tasks.config.cache_dirs.dirs = ['{cache_dir}']"]
    argv = ["cache-tasks", "--tasks", ",".join(TASKS), "--splits", "train", "--num_shards", "4",
            "--output_cache_dir", cache_dir]
    argv += [a for f in GIN_FILES for a in ("--gin_file", f)] + [a for b in bindings for a in ("--gin_param", b)]
    assert cli.main(argv + ["--", "--runner=DirectRunner"]) == 0
    return cache_dir, bindings


def test_the_cache_holds_every_train_row_with_the_settings_it_was_made_with(cached):
    cache_dir, _ = cached
    for name in TASKS:
        task_dir = os.path.join(cache_dir, name)
        with open(os.path.join(task_dir, "stats.train.json")) as f:
            assert json.load(f)["examples"] == 405
        assert len([f for f in os.listdir(task_dir) if f.startswith("train.tfrecord-")]) == 4
        with open(os.path.join(task_dir, "COMPLETED")) as f:
            recorded = json.load(f)["t5x_sbs_settings"]
        assert recorded["data_options"]["fraction"] == 0.05 and len(recorded["vocabulary_sha256"]) == 64


def test_cached_rows_and_batches_equal_the_uncached_ones(cached):
    configs.configs_from_gin(GIN_FILES, cached[1])
    for name in TASKS:
        task = seqio.get_mixture_or_task(name)
        plain = input_pipeline.read_task_rows(task, LENGTHS)
        from_cache = input_pipeline.read_task_rows(task, LENGTHS, use_cached=True)
        assert len(from_cache.inputs) == len(plain.inputs) == 405
        assert all(np.array_equal(a, b) for a, b in zip(from_cache.inputs, plain.inputs))
        assert all(np.array_equal(a, b) for a, b in zip(from_cache.targets, plain.targets))
        np.testing.assert_array_equal(from_cache.task_ids, plain.task_ids)
        np.testing.assert_array_equal(from_cache.unit_starts, plain.unit_starts)
    # Beam wrote the rows shuffled: their provenance puts them back in the uncached order.
    raw = seqio.get_mixture_or_task(TASKS[0]).get_dataset(LENGTHS, split="train", shuffle=False, use_cached=True)
    assert [int(r[cache.INDEX_KEY]) for r in raw.as_numpy_iterator()] != list(range(405))
    batches = {c: input_pipeline.train_batches("cqa_sbs_gold", LENGTHS, 8, pack=True, seed=3, use_cached=c)
               for c in (False, True)}
    for _ in range(4):
        a, b = next(batches[False]), next(batches[True])
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_cache_of_other_settings_or_no_cache_is_refused(cached):
    configs.configs_from_gin(GIN_FILES, cached[1] + ["tasks.config.data_options.rationale_coverage = 0.5"])
    with pytest.raises(ValueError, match="other settings.*data_options"):
        input_pipeline.read_task_rows(seqio.get_mixture_or_task(TASKS[0]), LENGTHS, use_cached=True)
    configs.configs_from_gin(GIN_FILES, cached[1])
    with pytest.raises(FileNotFoundError, match="no cache of task 'cqa_label_llm'.*t5x-sbs cache-tasks"):
        input_pipeline.read_task_rows(seqio.get_mixture_or_task("cqa_label_llm"), LENGTHS, use_cached=True)


def test_a_short_run_trains_from_the_cache(cached, monkeypatch):
    read = []
    prepare = cache.prepare_cached_read
    monkeypatch.setattr(cache, "prepare_cached_read", lambda task: read.append(task.name) or prepare(task))
    preempt_after(STEPS, monkeypatch)  # SIGTERM after STEPS steps: the loop saves and exits (no evaluation)
    bindings = cached[1] + [
        "T5Config.vocab_size = 256", "T5Config.d_model = 32", "T5Config.d_kv = 8", "T5Config.d_ff = 64",
        "T5Config.num_heads = 2", "T5Config.dropout_rate = 0.0", "TRAIN_STEPS = 100", "BATCH_SIZE = 8",
        "TASK_FEATURE_LENGTHS = {'inputs': 128, 'targets': 64}", "RunConfig.use_cached = True",
        "RunConfig.log_every = 1", "OptimizerConfig.learning_rate = 0.01"]
    run = configs.configs_from_gin(GIN_FILES, bindings)
    out = train_loop.train(run)
    assert out["step"] == STEPS and sorted(read) == sorted(TASKS)
    with open(os.path.join(run.run.model_dir, "metrics.jsonl")) as f:
        losses = [x["loss"] for x in map(json.loads, f) if "loss" in x]
    assert len(losses) == STEPS and all(np.isfinite(losses))
