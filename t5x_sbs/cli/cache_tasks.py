"""`t5x-sbs cache-tasks`: run our SeqIO tasks' preprocessing on Apache Beam into a cache that a run
reads with `RunConfig.use_cached = True` (`t5x_sbs.tasks.cache`).

SeqIO's `cache_tasks_main` machinery (its `run_pipeline`, with provenance kept) under the run's gin configuration, so the
cached tokens are those the run would build: the same --gin_file/--gin_param as `t5x-sbs train`
(SPM_PATH must name the vocabulary: a run that trains its own cannot match a cache). Beam's
pipeline options follow `--`; the default is the DirectRunner on this machine:

    t5x-sbs cache-tasks --tasks 'cqa_(label|rationale)_.*' --output_cache_dir /data/seqio_cache \\
        --gin_file gin/runs/sbs.gin --gin_param "SPM_PATH = '/data/spm/cqa.model'" \\
        -- --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import logging
import os
import re
import sys

import gin
import seqio
import tensorflow as tf

from t5x_sbs.tasks import cache, catalog, config as task_config, pretrain
from t5x_sbs.trainer import configs  # the same gin parsing as `t5x-sbs train`

DEFAULT_PIPELINE_OPTIONS = ("--runner=DirectRunner",)
_configured = False  # this process parsed the run's gin (a remote Beam worker has not)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", default=None,
                        help="comma-separated regexes of task names (full match); default: every cacheable "
                             "task of the built-in datasets. Mixtures are cached through their tasks")
    parser.add_argument("--excluded_tasks", default=None, help="comma-separated regexes of tasks to skip")
    parser.add_argument("--output_cache_dir", required=True, help="the cache (local or gs://); a run reads it "
                        "with tasks.config.cache_dirs.dirs = [DIR] and RunConfig.use_cached = True")
    parser.add_argument("--gin_file", action="append", default=[], help="the run's gin file (repeatable)")
    parser.add_argument("--gin_param", action="append", default=[], help="gin binding 'KEY = VALUE' (repeatable)")
    parser.add_argument("--gin_search_path", action="append", default=["."], help="where gin includes are looked up")
    parser.add_argument("--spm_path", default=None, help="the SentencePiece model (instead of SPM_PATH)")
    parser.add_argument("--splits", default=None, help="comma-separated splits to cache (default: all of a "
                        "task's; a run reads only train from the cache, evaluation builds its splits on the fly)")
    parser.add_argument("--overwrite", action="store_true", help="re-cache tasks already in the cache dir")
    parser.add_argument("--num_shards", type=int, default=8, help="output TFRecord shards per split")
    parser.add_argument("pipeline_options", nargs=argparse.REMAINDER,
                        help="after `--`: Apache Beam pipeline options (default --runner=DirectRunner)")


def configure(gin_files, gin_params, search_paths, spm_path) -> None:
    """The run's gin state and vocabulary for the tasks, and every built-in task registered."""
    global _configured
    gin.clear_config()
    task_config.use_vocabulary(spm_path)
    configs.parse_gin(list(gin_files), list(gin_params), list(search_paths), check_macros=False)
    catalog.register_all()
    _configured = True


def _worker_setup(gin_files, gin_params, search_paths, spm_path) -> None:
    """On a Beam worker (Dataflow, Flink, Spark), before it builds a task: the launcher's config."""
    if not _configured:
        configure(gin_files, gin_params, search_paths, spm_path)


def _beam():
    """(apache_beam, seqio.beam_utils), imported only when caching."""
    try:
        import apache_beam as beam
    except ImportError as e:
        raise ValueError(f"t5x-sbs cache-tasks needs Apache Beam ({e}): pip install 'apache-beam==2.77.0'") from None
    return beam, importlib.import_module("seqio.beam_utils")  # it imports apache_beam


def _regexes(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def default_tasks() -> list[str]:
    """Every registered built-in task that can be cached (not the paired or c4/text pretraining ones)."""
    names = [n for group, items in catalog.register_all().items() if group != "pretrain" for n in items]
    names += [pretrain.SHARED_TASK]
    return [n for n in names if n in seqio.TaskRegistry.names() and seqio.get_mixture_or_task(n).supports_caching]


def _seed(task_name: str, base_seed: int | None) -> int | None:
    """seqio cache_tasks_main's per-task preprocessor seed (our pre-cache steps use none)."""
    if base_seed is None:
        return None
    return int.from_bytes(hashlib.md5(task_name.encode()).digest(), "little") + base_seed


def add_to_pipeline(pipeline, task_names: list[str], output_cache_dir: str, *, splits=None, overwrite=False,
                    num_shards: int = 8, setup=lambda: None, base_seed: int | None = None) -> list[str]:
    """seqio cache_tasks_main's `run_pipeline` for our tasks: per task and split, the pre-cache
    preprocessing (`seqio.beam_utils.PreprocessTask`, with provenance: `tasks.cache.in_source_order`
    puts the rows back in the uncached order), a global shuffle, TFRecords of tf.Examples, info and
    stats JSON, then COMPLETED holding the settings the rows were made with. Returns the task dirs."""
    beam, beam_utils = _beam()
    written = []
    for name in task_names:
        task = seqio.get_mixture_or_task(name)
        out = os.path.join(output_cache_dir, seqio.get_task_dir_from_name(name))
        if not isinstance(task, seqio.Task) or not task.supports_caching:
            logging.warning("%s: not a cacheable task (no cache placeholder), skipped", name)
            continue
        if tf.io.gfile.exists(os.path.join(out, "COMPLETED")):
            if not overwrite:
                logging.info("%s: already cached at %s (--overwrite re-caches it)", name, out)
                continue
            tf.io.gfile.rmtree(out)
        chosen = [s for s in task.splits if splits is None or s in splits]
        done = []
        for split in chosen:
            label = f"{name}_{split}"
            rows = (pipeline
                    | f"{label}_preprocess" >> beam_utils.PreprocessTask(
                        task, split, preprocessors_seed=_seed(name, base_seed), setup_fn=setup, add_provenance=True)
                    | f"{label}_shuffle" >> beam.Reshuffle())
            done.append(rows | f"{label}_write" >> beam_utils.WriteExampleTfRecord(
                seqio.get_cached_tfrecord_prefix(out, split), num_shards=num_shards))
            done.append(rows | f"{label}_info" >> beam_utils.GetInfo(num_shards, exclude_provenance=False)
                        | f"{label}_write_info" >> beam_utils.WriteJson(seqio.get_cached_info_path(out, split)))
            done.append(rows | f"{label}_stats" >> beam_utils.GetStats(task.output_features)
                        | f"{label}_write_stats" >> beam_utils.WriteJson(seqio.get_cached_stats_path(out, split)))
        _ = (done | f"{name}_flatten" >> beam.Flatten() | f"{name}_discard" >> beam.Filter(lambda _: False)
             | f"{name}_completed" >> beam.io.textio.WriteToText(
                 os.path.join(out, "COMPLETED"), append_trailing_newlines=False, num_shards=1,
                 shard_name_template="", header=cache.completed_contents()))
        written.append(out)
    return written


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    beam, _ = _beam()
    configure(args.gin_file, args.gin_param, args.gin_search_path, args.spm_path)
    options = [o for o in args.pipeline_options if o != "--"] or list(DEFAULT_PIPELINE_OPTIONS)
    patterns = _regexes(args.tasks)
    registered = default_tasks()
    tasks = registered if not patterns else [
        n for n in seqio.TaskRegistry.names() if any(re.fullmatch(p, n) for p in patterns)]
    excluded = _regexes(args.excluded_tasks) or []
    tasks = [n for n in tasks if not any(re.fullmatch(p, n) for p in excluded)]
    if not tasks:
        raise ValueError(f"--tasks {args.tasks!r} matches no registered task (e.g. {registered[:3]})")
    setup = functools.partial(_worker_setup, tuple(args.gin_file), tuple(args.gin_param),
                              tuple(args.gin_search_path), args.spm_path)
    tf.io.gfile.makedirs(args.output_cache_dir)
    with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(options)) as pipeline:
        written = add_to_pipeline(pipeline, tasks, args.output_cache_dir, splits=_regexes(args.splits),
                                  overwrite=args.overwrite, num_shards=args.num_shards, setup=setup)
    print(f"cached {len(written)} task(s) into {args.output_cache_dir}: "
          + ", ".join(os.path.basename(d.rstrip("/")) for d in written) if written else
          f"nothing cached into {args.output_cache_dir}: already cached (--overwrite re-caches) or not cacheable")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="t5x-sbs cache-tasks", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
