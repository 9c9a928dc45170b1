"""Span-corruption pretraining throughput: tokens/s and MFU of the real train step on real
pretraining batches, and how fast the input pipeline makes them.

    python benchmarks/pretrain_throughput.py --quick              # tiny model, < 2 min on 2 CPU cores
    python benchmarks/pretrain_throughput.py --gin_file=gin/models/t5_1_1/base.gin --batch=128 \
        --dtype=bfloat16 --hardware=gin/hardware/h100.gin

Batches: the `shared_span_corruption` task (../shared/data's decontaminated train text, T5's
noise density 0.15 / mean span 3, 512 inputs / 114 targets), packed by the trainer's feature
converter, with the optimizer, loss and dropout of gin/runs/pretrain.gin. tokens/s counts the
computed positions (inputs + targets per row) and, separately, the real (non-padding) ones.
MFU = 6·N·tokens/s / (devices × peak), the trainer's formula (t5x_sbs.trainer.metrics_logging). Last
line: `ratio: MFU / 0.40` (the H100 goal), as benchmarks/train_step.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import _common  # noqa: F401  (puts the repo on sys.path)
from train_step import GOAL_MFU, default_hardware


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny model, batch 8, 3 timed steps, 5000-document vocabulary")
    p.add_argument("--gin_file", default="gin/models/t5_1_1/small.gin", help="model size")
    p.add_argument("--partitioning", default="gin/partitioning/dp.gin")
    p.add_argument("--hardware", default=None, help="gin/hardware/*.gin for the peak (default: by device kind)")
    p.add_argument("--data_dir", default=_common.DEFAULT_DATA_DIR)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--inputs", type=int, default=512)
    p.add_argument("--targets", type=int, default=114)
    p.add_argument("--steps", type=int, default=5, help="timed steps after 2 warm-up steps")
    p.add_argument("--vocab_size", type=int, default=8000, help="SentencePiece pieces (+100 sentinels)")
    p.add_argument("--dtype", default="float32", help="activation dtype (params stay float32)")
    args = p.parse_args(argv)
    if args.quick:
        args.gin_file, args.batch, args.steps, args.vocab_size = "gin/models/t5_1_1/tiny.gin", 8, 3, 2000
    return args


def vocabulary(args, work_dir: str) -> str:
    from t5x_sbs.data import pretrain_corpus, vocab

    docs = pretrain_corpus.shared_corpus(args.data_dir)
    sample = docs[:: max(1, len(docs) // 5000)] if args.quick else docs
    return vocab.train_sentencepiece([d.text for d in sample], os.path.join(work_dir, "spiece.model"), args.vocab_size)


def pipeline_batches(args, count: int):
    """`count` packed span-corruption batches and the seconds the pipeline took to make them."""
    import seqio

    from t5x_sbs.data.feature_converter import TaskAwareEncDecFeatureConverter

    start = time.perf_counter()
    ds = seqio.get_dataset("shared_span_corruption", {"inputs": args.inputs, "targets": args.targets},
                           dataset_split="train", shuffle=False, use_cached=False,
                           feature_converter=TaskAwareEncDecFeatureConverter(pack=True))
    batches = list(ds.batch(args.batch, drop_remainder=True).take(count).as_numpy_iterator())
    return batches, time.perf_counter() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    import gin
    import jax
    import numpy as np

    from t5x_sbs.trainer import configs, train_loop
    from t5x_sbs.experiments.runner import padded_vocab_size
    from t5x_sbs.trainer.metrics_logging import flops_per_step

    work_dir = tempfile.mkdtemp(prefix="pretrain_bench_")
    t0 = time.perf_counter()
    spm_path = vocabulary(args, work_dir)
    vocab_s = time.perf_counter() - t0
    hardware = args.hardware or default_hardware()
    configs.parse_gin([args.gin_file, "gin/runs/pretrain.gin", args.partitioning, hardware],
                    [f"T5Config.dtype = '{args.dtype}'", f"SPM_PATH = '{spm_path}'", f"DATA_DIR = '{args.data_dir}'",
                     f"MODEL_DIR = '{work_dir}'", "MIXTURE_OR_TASK_NAME = 'shared_span_corruption'",
                     f"T5Config.vocab_size = {padded_vocab_size(spm_path) + 128}"])  # + the 100 sentinels
    gin.bind_parameter("tasks.config.vocabulary_path.path", spm_path)
    peak = gin.query_parameter("%PEAK_FLOPS_PER_DEVICE")
    batches, pipeline_s = pipeline_batches(args, args.steps + 2)
    run_configs = configs.from_gin(model_dir="", mixture_or_task_name="shared_span_corruption", train_steps=1000,
                                   batch_size=args.batch, task_feature_lengths={"inputs": args.inputs, "targets": args.targets})
    config, part, trainer = train_loop.build(run_configs)
    flops = flops_per_step(trainer.abstract_state().params, args.batch, args.inputs, args.targets)
    state = trainer.init_state()
    with part.activation_context():
        t0 = time.perf_counter()
        for batch in batches[:2]:  # compile + one warm step
            state, metrics = trainer.train_step(state, part.global_batch(batch), trainer.base_rng)
        jax.block_until_ready(metrics["loss"])
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for batch in batches[2:]:
            state, metrics = trainer.train_step(state, part.global_batch(batch), trainer.base_rng)
        jax.block_until_ready(metrics["loss"])
        seconds = (time.perf_counter() - t0) / args.steps
    computed = args.batch * (args.inputs + args.targets)
    real = np.mean([int((b["encoder_input_tokens"] != 0).sum() + (b["decoder_target_tokens"] != 0).sum())
                    for b in batches])
    mfu = flops / seconds / (jax.device_count() * peak)
    print(f"model {args.gin_file} ({trainer.num_params() / 1e6:.1f}M params, vocab {config.vocab_size}, {args.dtype}), "
          f"batch {args.batch} x ({args.inputs} + {args.targets}) packed span-corruption tokens, "
          f"{jax.device_count()} x {jax.devices()[0].device_kind}, peak {peak:.3g} FLOP/s per device ({hardware})")
    print(f"corpus + vocabulary: {vocab_s:.1f} s   pipeline: first {len(batches)} batches in {pipeline_s:.1f} s "
          f"(start-up included: {len(batches) * computed / pipeline_s:.0f} tokens/s)")
    print(f"compile+warmup: {compile_s:.1f} s   step: {seconds * 1e3:.1f} ms   loss: {float(metrics['loss']):.3f}")
    print(f"tokens/s: {computed / seconds:.0f} computed, {real / seconds:.0f} real ({real / computed:.2f} of "
          f"positions)   model FLOPs/step: {flops:.3g}   MFU: {mfu:.4f}")
    print(f"ratio: {mfu / GOAL_MFU:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
