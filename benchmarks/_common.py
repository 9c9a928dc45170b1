"""What the benchmarks share: the CQA step-by-step examples, a vocabulary, the model
configs, and the reference side (the paper's code path: Hugging Face T5 in torch).

The reference mirrors google-research/distilling-step-by-step's `TaskPrefixTrainer`: each
batch of B examples becomes a label sub-batch ("predict: " + input -> label) and a rationale
sub-batch ("explain: " + input -> rationale), each padded to ITS longest row
(DataCollatorForSeq2Seq), two forward/backward passes, loss = α·L_label + (1-α)·L_rationale,
AdamW. Inputs truncated at 1024 tokens, targets at 256, as there.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(REPO), "shared", "data")
MAX_INPUT, MAX_TARGET = 1024, 256
PAD, EOS = 0, 1


@dataclasses.dataclass(frozen=True)
class SbsExample:
    """One source example as token ids: its label row and its rationale row."""

    label_inputs: list[int]
    label_targets: list[int]
    rationale_inputs: list[int]
    rationale_targets: list[int]


def cqa_texts(data_dir: str, limit: int) -> list[tuple[str, str, str]]:
    """(input text, PaLM label, PaLM rationale) for the first `limit` parsable CQA train rows."""
    from t5x_sbs.teacher.aligned_outputs import load_palm_teacher

    rows = []
    for out in load_palm_teacher("cqa", data_dir, "train"):
        if out.parsed.status == "ok":
            rows.append((out.example.text, out.parsed.label, out.parsed.rationale))
        if len(rows) == limit:
            break
    return rows


def train_vocab(texts: list[str], vocab_size: int, out_dir: str) -> str:
    """A SentencePiece model with T5's special ids (pad 0, eos 1, unk 2) via the project's trainer."""
    from t5x_sbs.data import vocab

    return vocab.train_sentencepiece(texts, os.path.join(out_dir, "spm.model"), vocab_size=vocab_size)


def add_model_args(parser, quick_help: str = "mini model, few steps") -> None:
    """The flags every model benchmark shares: data, --quick, model size, vocabulary size."""
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--size", default=None, choices=sorted(SIZES))
    parser.add_argument("--vocab_size", type=int, default=8000)


def padded_vocab(spm_path: str) -> int:
    """The model's vocab size: the SentencePiece size rounded up (as T5's 32100 -> 32128)."""
    from t5x_sbs.experiments.runner import padded_vocab_size

    return padded_vocab_size(spm_path)


def tokenize(rows: list[tuple[str, str, str]], spm_path: str) -> list[SbsExample]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=spm_path)

    def ids(text: str, limit: int) -> list[int]:
        return sp.encode(text)[: limit - 1] + [EOS]

    return [SbsExample(ids("predict: " + x, MAX_INPUT), ids(label, MAX_TARGET),
                       ids("explain: " + x, MAX_INPUT), ids(rationale, MAX_TARGET)) for x, label, rationale in rows]


# Model sizes the benchmarks use (T5 v1.1 shapes); `vocab_size` comes from the vocabulary.
SIZES = {
    "mini": dict(d_model=128, d_kv=32, d_ff=512, num_heads=4, num_encoder_layers=2, num_decoder_layers=2),
    "small": dict(d_model=512, d_kv=64, d_ff=1024, num_heads=6, num_encoder_layers=8, num_decoder_layers=8),
}


def model_config(size: str, vocab_size: int, dropout_rate: float = 0.1):
    from t5x_sbs.models.config import T5Config

    return T5Config(vocab_size=vocab_size, dropout_rate=dropout_rate, **SIZES[size])


def hf_config(config):
    """The transformers T5Config with the same architecture as our T5Config."""
    import transformers

    return transformers.T5Config(
        vocab_size=config.vocab_size, d_model=config.d_model, d_kv=config.d_kv, d_ff=config.d_ff,
        num_heads=config.num_heads, num_layers=config.num_encoder_layers,
        num_decoder_layers=config.num_decoder_layers, dropout_rate=config.dropout_rate,
        relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        layer_norm_epsilon=config.layer_norm_epsilon, feed_forward_proj=config.feed_forward_proj,
        tie_word_embeddings=config.tie_word_embeddings, decoder_start_token_id=0, pad_token_id=PAD,
        eos_token_id=EOS)


def pad_to_longest(rows: list[list[int]], fill: int):
    import torch

    longest = max(len(r) for r in rows)
    return torch.tensor([r + [fill] * (longest - len(r)) for r in rows], dtype=torch.long)


def reference_sub_batch(inputs: list[list[int]], targets: list[list[int]]) -> dict:
    """One DataCollatorForSeq2Seq batch: inputs padded with 0, labels with -100."""
    input_ids = pad_to_longest(inputs, PAD)
    return {"input_ids": input_ids, "attention_mask": (input_ids != PAD).long(),
            "labels": pad_to_longest(targets, -100)}


def padding_stats(sub_batches: list[dict]) -> tuple[int, int]:
    """(real tokens, computed tokens) over encoder inputs and decoder targets."""
    real = computed = 0
    for b in sub_batches:
        real += int(b["attention_mask"].sum()) + int((b["labels"] != -100).sum())
        computed += b["input_ids"].numel() + b["labels"].numel()
    return real, computed


def reference_batches(examples: list[SbsExample], batch_size: int) -> list[tuple[dict, dict]]:
    out = []
    for i in range(0, len(examples) - batch_size + 1, batch_size):
        chunk = examples[i:i + batch_size]
        out.append((reference_sub_batch([e.label_inputs for e in chunk], [e.label_targets for e in chunk]),
                    reference_sub_batch([e.rationale_inputs for e in chunk], [e.rationale_targets for e in chunk])))
    return out


def run_reference(config, examples: list[SbsExample], batch_size: int, steps: int, warmup: int,
                  alpha: float = 0.5, learning_rate: float = 5e-5, two_passes: bool = True) -> dict:
    """The paper's training step in torch; examples/s over `steps` timed steps after `warmup`."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(hf_config(config))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    batches = reference_batches(examples, batch_size)
    if len(batches) < warmup + steps:
        raise ValueError(f"{len(examples)} examples make {len(batches)} batches of {batch_size}; "
                         f"need {warmup + steps}")
    losses, start = [], None
    for step, (label_batch, rationale_batch) in enumerate(batches[:warmup + steps]):
        if step == warmup:
            start = time.perf_counter()
        if two_passes:
            loss = alpha * model(**label_batch).loss + (1 - alpha) * model(**rationale_batch).loss
        else:  # plain finetuning: the label sub-batch only
            loss = model(**label_batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach().item())
    elapsed = time.perf_counter() - start
    timed = batches[warmup:warmup + steps]
    real, computed = padding_stats([b for pair in timed for b in (pair if two_passes else pair[:1])])
    return {"examples_per_s": steps * batch_size / elapsed, "step_s": elapsed / steps,
            "padding_efficiency": real / computed, "first_loss": losses[0], "last_loss": losses[-1]}


def packed_batches(examples, packed_rows: int, lengths: dict[str, int]) -> list[dict]:
    """Label and rationale rows in example order, packed by our feature converter."""
    import tensorflow as tf

    from t5x_sbs.data.feature_converter import TaskAwareEncDecFeatureConverter
    from t5x_sbs.names import LABEL_TASK_ID, RATIONALE_TASK_ID

    def rows():
        for e in examples:
            yield {"inputs": e.label_inputs, "targets": e.label_targets, "task": LABEL_TASK_ID}
            yield {"inputs": e.rationale_inputs, "targets": e.rationale_targets, "task": RATIONALE_TASK_ID}

    spec = {"inputs": tf.TensorSpec([None], tf.int32), "targets": tf.TensorSpec([None], tf.int32),
            "task": tf.TensorSpec([], tf.int32)}
    ds = tf.data.Dataset.from_generator(rows, output_signature=spec)
    ds = TaskAwareEncDecFeatureConverter(pack=True)(ds, lengths)
    return list(ds.batch(packed_rows, drop_remainder=True).as_numpy_iterator())


def rows_in(batch) -> int:
    """Source rows in a packed batch: segment ids count 1..k per packed row."""
    return int(batch["encoder_segment_ids"].max(axis=1).sum())


def cqa_examples(data_dir: str, limit: int, vocab_size: int, work_dir: str) -> tuple[list[SbsExample], str]:
    """Tokenized CQA step-by-step examples and the SentencePiece model trained on their text."""
    rows = cqa_texts(data_dir, limit)
    spm_path = train_vocab([t for r in rows for t in r] + ["predict: explain:"] * 10, vocab_size, work_dir)
    return tokenize(rows, spm_path), spm_path


def examples_per_s_line(name: str, result: dict) -> str:
    return (f"{name}: {result['examples_per_s']:.2f} examples/s, {result['step_s']:.3f} s/step, "
            f"padding efficiency {result['padding_efficiency']:.2f}")
