"""Step-by-step training throughput: our jitted step vs the paper's code path, in one run.

Reference (what google-research/distilling-step-by-step does): Hugging Face T5 in torch, two
forward/backward passes per batch (label and rationale sub-batches, each padded to its
longest), AdamW. Ours: the trainer's jitted train step (t5x_sbs.trainer.train_step.Trainer), one pass for
both tasks, AdamW, on these layouts of the same examples:
  - default lengths: label and rationale rows packed by the feature converter into 512 input +
    256 target tokens;
  - lengths from the data: the same two-row packing into rows sized from the data's token
    lengths (tasks.lengths.pack_lengths: the longest row fits, --rows_per_pack mean rows a pack);
  - shared encoder (LOSS_MODE='shared_encoder', t5x_sbs.trainer.shared_encoder): each example's input
    encoded once, label and rationale decoded from it, rows sized from the data likewise;
  - length buckets (RunConfig.length_bucket_window, t5x_sbs.trainer.length_buckets), two-row and
    shared encoder: one example a row (two-row: its label and rationale rows packed in it), the
    reference's examples per step, batches sorted by length over a window and padded to a bucket,
    so no attention crosses examples.
The packed data-sized layouts take as many rows per step as keep the tokens per step of the default.
Compilation is outside the clock for every layout: each step shape the timed steps use is run once
first (length buckets compile once per bucket pair; the count is printed).
Same model config, same CQA examples with PaLM rationales (../shared/data), same CPU. Prints
examples/s for each, a ratio per layout (ours / reference), and, last, `ratio: X` (the fastest).

    python benchmarks/sbs_throughput.py --quick        # < 3 minutes on 2 CPU cores
    python benchmarks/sbs_throughput.py --quick --only buckets   # the reference and the length-bucket layouts
    python benchmarks/sbs_throughput.py --size small --batch_size 64
"""
from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time

import _common  # noqa: E402  (puts the repo on sys.path)


def examples_in(batch) -> int:
    """Source examples in a batch (either layout): its label segments."""
    from t5x_sbs.names import LABEL_TASK_ID

    return int(((batch["decoder_task_ids"] == LABEL_TASK_ID) & (batch["decoder_positions"] == 0)).sum())


def run_ours(config, batches: list[dict], steps: int, warmup: int, learning_rate=5e-5) -> dict:
    import jax
    import numpy as np

    from t5x_sbs.trainer import optimizers, partitioning, train_step
    from t5x_sbs.models.t5 import Transformer

    if len(batches) < warmup + steps:
        raise ValueError(f"the examples pack into {len(batches)} batches; need {warmup + steps}")
    warm, timed = warmup_batches(batches, warmup, steps), batches[warmup:warmup + steps]
    opt_config = optimizers.OptimizerConfig(name="adamw", learning_rate=learning_rate)
    partitioner = partitioning.Partitioner(partitioning.make_mesh(devices=jax.devices()[:1]))
    shapes = {k: v.shape for k, v in batches[0].items()}
    tr = train_step.Trainer(Transformer(config), optimizers.make_optimizer(opt_config, warmup + steps), partitioner,
                         shapes, loss_config=train_step.LossConfig(rationale_weight=1.0),
                         schedule=optimizers.make_schedule(opt_config, warmup + steps))
    with partitioner.activation_context():
        state = tr.init_state()
        losses, start = [], None
        for step, batch in enumerate(warm + timed):
            if step == len(warm):
                jax.block_until_ready(state)
                start = time.perf_counter()
            state, metrics = tr.train_step(state, partitioner.global_batch(batch), tr.base_rng)
            losses.append(metrics["loss"])
        jax.block_until_ready(state)
    elapsed = time.perf_counter() - start
    count = sum(examples_in(b) for b in timed)
    real = sum(int((b["encoder_input_tokens"] != 0).sum() + (b["decoder_target_tokens"] != 0).sum()) for b in timed)
    computed = sum(b["encoder_input_tokens"].size + b["decoder_target_tokens"].size for b in timed)
    return {"examples_per_s": count / elapsed, "step_s": elapsed / steps, "padding_efficiency": real / computed,
            "examples_per_step": count / steps, "first_loss": float(np.asarray(losses[0])),
            "last_loss": float(np.asarray(losses[-1])), "shapes": len({_shape(b) for b in timed})}


def _shape(batch) -> tuple:
    return batch["encoder_input_tokens"].shape, batch["decoder_target_tokens"].shape


def warmup_batches(batches: list[dict], warmup: int, steps: int) -> list[dict]:
    """The first `warmup` batches, then one timed batch of each shape they lack: every shape the
    timed steps use (length buckets: one per bucket pair) is compiled before the clock starts."""
    warm, seen = list(batches[:warmup]), {_shape(b) for b in batches[:warmup]}
    for batch in batches[warmup:warmup + steps]:
        if _shape(batch) not in seen:
            warm.append(batch)
            seen.add(_shape(batch))
    return warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_model_args(parser, quick_help="mini model, few steps (< 3 minutes)")
    parser.add_argument("--batch_size", type=int, default=None, help="reference examples per step")
    parser.add_argument("--packed_rows", type=int, default=None, help="our packed rows per step (default B/4)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--bucket_window", type=int, default=32,
                        help="length buckets: batches sorted by length together (RunConfig.length_bucket_window)")
    parser.add_argument("--rows_per_pack", type=float, default=2.0,
                        help="data-sized layouts: room for this many mean-length rows a pack (longer rows pay "
                             "attention across more masked segment pairs; shorter ones pad more)")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="time only the layouts whose names hold TEXT (repeatable, e.g. --only buckets); "
                             "all by default")
    args = parser.parse_args()
    size = args.size or ("mini" if args.quick else "small")
    batch = args.batch_size or (32 if args.quick else 64)
    steps = args.steps or (16 if args.quick else 32)  # length buckets: enough steps to sample their shapes
    packed_rows = args.packed_rows or max(1, batch // 4)
    lengths = {"inputs": 512, "targets": 256}

    import torch
    torch.set_num_threads(args.threads)
    limit = max(batch * (steps + args.warmup) * 2, 600 if args.quick else 2000)
    with tempfile.TemporaryDirectory() as tmp:
        examples, spm_path = _common.cqa_examples(args.data_dir, limit, args.vocab_size, tmp)
        config = _common.model_config(size, vocab_size=_common.padded_vocab(spm_path))
        prefix = rationale_prefix(spm_path)
    print(f"CQA train with PaLM rationales: {len(examples)} examples; model {size} "
          f"(d_model {config.d_model}, {config.num_encoder_layers}+{config.num_decoder_layers} layers, "
          f"vocab {config.vocab_size}); {args.threads} threads")
    sizes = {"packed_rows": packed_rows, "examples": batch, "window": args.bucket_window}
    timed = [(name, shape, build)
             for name, shape, build in layouts(examples, sizes, lengths, prefix, args.warmup + steps, args.rows_per_pack)
             if not args.only or any(text in name for text in args.only)]
    if not timed:  # said before the reference's minute, not after it
        parser.error(f"--only: no layout's name holds any of {args.only}")
    ref = _common.run_reference(config, examples, batch, steps, args.warmup)
    print(f"reference (HF torch, 2 passes, padded to longest, batch {batch}): {ref['examples_per_s']:.2f} examples/s, "
          f"{ref['step_s']:.2f} s/step, padding efficiency {ref['padding_efficiency']:.2f}, "
          f"loss {ref['first_loss']:.2f} -> {ref['last_loss']:.2f}")
    ratios = {}
    for name, shape, build in timed:
        ours = run_ours(config, build(), steps, args.warmup)
        print(f"ours, {name} (jitted, {shape}, 1 pass): {ours['examples_per_s']:.2f} examples/s, "
              f"{ours['step_s']:.2f} s/step, {ours['examples_per_step']:.1f} examples/step, padding efficiency "
              f"{ours['padding_efficiency']:.2f}, {ours['shapes']} step shape(s), "
              f"loss {ours['first_loss']:.2f} -> {ours['last_loss']:.2f}")
        ratios[name] = ours["examples_per_s"] / ref["examples_per_s"]
        print(f"ratio ({name}): {ratios[name]:.2f}")
    print(f"ratio: {max(ratios.values()):.2f}")


def rationale_prefix(spm_path: str) -> list[int]:
    """The rationale prefix the examples' rationale inputs start with, for the shared encoder's decoder."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=spm_path).encode("explain:")


def sized_from_data(measured: dict[str, list[int]], default: dict[str, int], packed_rows: int,
                    rows_per_pack: float):
    """(rows per step, feature lengths): the longest row fits (capped at the default), room for
    `rows_per_pack` mean rows a pack, and as many rows as keep the default's tokens per step."""
    from t5x_sbs.tasks.lengths import pack_lengths

    sized = pack_lengths(measured, percentile=100, rows_per_pack=rows_per_pack, cap=default)
    return max(1, round(packed_rows * sum(default.values()) / sum(sized.values()))), sized


def layouts(examples, sizes: dict[str, int], default: dict[str, int], prefix: list[int], count: int,
            rows_per_pack: float):
    """(name, shape, build) for the default packing, the data-sized one, the shared encoder, and
    length buckets (one example a row) in the two-row and shared-encoder layouts; `build()` makes
    the layout's batches, so a layout that `--only` leaves out is never packed."""
    def shape(rows, lengths, what):
        return f"{what} {rows}x({lengths['inputs']}+{lengths['targets']})"

    packed_rows = sizes["packed_rows"]
    yield ("default lengths", shape(packed_rows, default, "packed"),
           functools.partial(_common.packed_batches, examples, packed_rows, default))
    two_row = {"inputs": [len(x) for e in examples for x in (e.label_inputs, e.rationale_inputs)],
               "targets": [len(x) for e in examples for x in (e.label_targets, e.rationale_targets)]}
    rows, lengths = sized_from_data(two_row, default, packed_rows, rows_per_pack)
    yield ("lengths from the data", shape(rows, lengths, "packed"),
           functools.partial(_common.packed_batches, examples, rows, lengths))
    shared = {"inputs": [len(e.label_inputs) for e in examples],
              "targets": [len(e.label_targets) + len(prefix) + len(e.rationale_targets) for e in examples]}
    rows, lengths = sized_from_data(shared, default, packed_rows, rows_per_pack)
    yield ("shared encoder", shape(rows, lengths, "shared-encoder"),
           functools.partial(stream_batches, examples, rows, lengths, count, prefix=prefix))
    window, per_step = sizes["window"], sizes["examples"]
    what = f"{{}} rows a step of up to {default['inputs']}+{default['targets']}, window {window}"
    yield ("two-row, length buckets", what.format(per_step),
           functools.partial(stream_batches, examples, per_step, default, count, bucket_window=window))
    yield ("shared encoder, length buckets", what.format(per_step),
           functools.partial(stream_batches, examples, per_step, default, count, prefix=prefix,
                             bucket_window=window))


def stream_batches(examples, rows: int, lengths: dict[str, int], count: int, *, prefix: list[int] | None = None,
                   bucket_window: int = 0) -> list[dict]:
    """`count` batches of the trainer's own stream over the examples' (label row, rationale row)
    pairs: the shared encoder when given the rationale prefix, else two rows an example; packed
    (length buckets: an example's label and rationale rows share a row)."""
    import numpy as np

    from t5x_sbs.trainer import input_pipeline, shared_encoder
    from t5x_sbs.names import LABEL_TASK_ID, RATIONALE_TASK_ID

    inputs = [np.int32(x) for e in examples for x in (e.label_inputs, e.rationale_inputs)]
    targets = [np.int32(x) for e in examples for x in (e.label_targets, e.rationale_targets)]
    task_ids = np.int32([LABEL_TASK_ID, RATIONALE_TASK_ID] * len(examples))
    task_rows = input_pipeline.TaskRows("cqa_sbs_llm_paired", inputs, targets, task_ids,
                                        np.arange(0, 2 * len(examples) + 1, 2))
    common = dict(pack=True, seed=0, bucket_window=bucket_window)
    if prefix is None:
        stream = input_pipeline.TrainBatches([task_rows], np.ones(1), lengths, rows, **common)
    else:
        stream = shared_encoder.SharedEncoderBatches([task_rows], np.ones(1), lengths, rows, rationale_prefix=prefix,
                                                     **common)
    return [next(stream) for _ in range(count)]


if __name__ == "__main__":
    main()
