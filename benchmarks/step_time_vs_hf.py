"""Step time vs Hugging Face torch: plain finetuning, same T5 config, same padded batch.

Ours: the trainer's jitted train step (t5x_sbs.trainer.train_step.Trainer, unpacked batch, AdamW).
Reference: transformers.T5ForConditionalGeneration in torch, one forward/backward + AdamW.
Same CQA label rows (../shared/data, "predict: " + question -> answer), padded to fixed lengths
on both sides, same CPU. Last line: `ratio: X` = reference s/step / ours s/step (> 1: ours faster).

    python benchmarks/step_time_vs_hf.py --quick     # mini model, batch 8, 64+16 tokens
    python benchmarks/step_time_vs_hf.py --size small --batch_size 8 --inputs 256 --targets 128
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import _common


def fixed_batches(examples, batch_size: int, inputs: int, targets: int, count: int) -> list[dict]:
    """T5X-style unpacked batches of label rows (decoder inputs = targets shifted right)."""
    batches = []
    for b in range(count):
        chunk = examples[b * batch_size:(b + 1) * batch_size]
        enc = np.zeros((batch_size, inputs), np.int32)
        tgt = np.zeros((batch_size, targets), np.int32)
        for i, e in enumerate(chunk):
            x, y = e.label_inputs[:inputs], e.label_targets[:targets]
            enc[i, :len(x)], tgt[i, :len(y)] = x, y
        dec_in = np.concatenate([np.zeros((batch_size, 1), np.int32), tgt[:, :-1]], axis=1)
        batches.append({"encoder_input_tokens": enc, "decoder_input_tokens": dec_in, "decoder_target_tokens": tgt,
                        "decoder_loss_weights": (tgt > 0).astype(np.int32),
                        "decoder_task_ids": (tgt > 0).astype(np.int32)})
    return batches


def run_ours(config, batches, warmup: int, learning_rate: float = 5e-5) -> float:
    import jax

    from t5x_sbs.trainer import optimizers, partitioning, train_step
    from t5x_sbs.models.t5 import Transformer

    opt = optimizers.OptimizerConfig(name="adamw", learning_rate=learning_rate)
    part = partitioning.Partitioner(partitioning.make_mesh(devices=jax.devices()[:1]))
    tr = train_step.Trainer(Transformer(config), optimizers.make_optimizer(opt, len(batches)), part,
                         {k: v.shape for k, v in batches[0].items()}, loss_config=train_step.LossConfig(z_loss=0.0),
                         schedule=optimizers.make_schedule(opt, len(batches)))
    with part.activation_context():
        state = tr.init_state()
        for step, batch in enumerate(batches):
            if step == warmup:
                jax.block_until_ready(state)
                start = time.perf_counter()
            state, _ = tr.train_step(state, part.global_batch(batch), tr.base_rng)
        jax.block_until_ready(state)
    return (time.perf_counter() - start) / (len(batches) - warmup)


def run_reference(config, batches, warmup: int, learning_rate: float = 5e-5) -> float:
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(_common.hf_config(config)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    for step, batch in enumerate(batches):
        if step == warmup:
            start = time.perf_counter()
        enc = torch.from_numpy(batch["encoder_input_tokens"]).long()
        labels = torch.from_numpy(batch["decoder_target_tokens"]).long().masked_fill(
            torch.from_numpy(batch["decoder_target_tokens"]) == 0, -100)
        loss = model(input_ids=enc, attention_mask=(enc != 0).long(), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / (len(batches) - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_model_args(parser)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--inputs", type=int, default=None)
    parser.add_argument("--targets", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    size = args.size or ("mini" if args.quick else "small")
    inputs, targets = args.inputs or (64 if args.quick else 256), args.targets or (16 if args.quick else 128)
    steps = args.steps or (10 if args.quick else 6)
    import torch
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        examples, spm_path = _common.cqa_examples(args.data_dir, args.batch_size * (steps + args.warmup) + 500,
                                                  args.vocab_size, tmp)
        config = _common.model_config(size, _common.padded_vocab(spm_path), dropout_rate=0.0)
    batches = fixed_batches(examples, args.batch_size, inputs, targets, steps + args.warmup)
    print(f"model {size} (d_model {config.d_model}, vocab {config.vocab_size}), batch {args.batch_size} x "
          f"({inputs}+{targets}) tokens, {steps} timed steps, {args.threads} threads")
    ref = run_reference(config, batches, args.warmup)
    print(f"reference (HF torch, eager): {ref:.3f} s/step, {args.batch_size / ref:.2f} examples/s")
    ours = run_ours(config, batches, args.warmup)
    print(f"ours (jitted train step):    {ours:.3f} s/step, {args.batch_size / ours:.2f} examples/s")
    print(f"ratio: {ref / ours:.2f}")


if __name__ == "__main__":
    main()
