"""T5's span-corruption objective as a SeqIO preprocessor (`span_corruption`).

The algorithm is T5's (`t5.data.preprocessors.span_corruption`, Raffel et al. 2020, Apache-2.0):
a document's tokens are cut into segments of the length that, after corruption, fills
`inputs` exactly (`random_spans_helper`: 568 tokens for 512 inputs / 114 targets); in each
segment `noise_density` of the tokens, in spans of mean length `mean_noise_span_length`, are
masked; the inputs keep the other tokens with one sentinel per masked span, the targets hold
each sentinel followed by the span it replaced. Sentinels are the vocabulary's extra ids,
counting down from the last id (`<extra_id_0>` = vocab_size - 1). SeqIO 0.0.20 has no span
corruption of its own (it lives in the `t5` package, whose dependencies include
mesh-tensorflow and torch), hence this port.

One difference: the random seeds are a hash of the segment's tokens (plus `seed`), not
seqio's per-map seeds, so a segment is corrupted the same way whatever the split, the process
count or whether it is read again: a resumed or multi-host run sees the same rows, and the
validation loss of two runs is comparable. Documents are not concatenated before splitting
(T5's `reduce_concat_tokens`): the trainer packs rows, which removes the padding as well and
keeps documents apart (segment ids).
"""
from __future__ import annotations

from typing import Mapping

import seqio
import tensorflow as tf

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0
DEFAULT_INPUTS_LENGTH = 512


def random_spans_helper(inputs_length: int = DEFAULT_INPUTS_LENGTH, noise_density: float = NOISE_DENSITY,
                        mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> tuple[int, int]:
    """(tokens per segment before corruption, targets length it needs), EOS included, as T5."""
    def lengths(tokens_length: int) -> tuple[int, int]:
        noise = int(round(tokens_length * noise_density))
        spans = int(round(noise / mean_noise_span_length))
        return tokens_length - noise + spans + 1, noise + spans + 1

    tokens_length = inputs_length - 1
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    return tokens_length, lengths(tokens_length)[1]


def random_spans_noise_mask(length, noise_density: float, seeds, mean_noise_span_length: float):
    """A bool mask of `length` with round(length * density) noise tokens in alternating
    non-noise / noise spans, starting with non-noise (T5's `random_spans_noise_mask`)."""
    orig_length = length
    length = tf.maximum(length, 2)
    num_noise = tf.cast(tf.round(tf.cast(length, tf.float32) * noise_density), tf.int32)
    num_noise = tf.minimum(tf.maximum(num_noise, 1), length - 1)
    num_spans = tf.maximum(tf.cast(tf.round(tf.cast(num_noise, tf.float32) / mean_noise_span_length), tf.int32), 1)

    def segmentation(num_items, seed):
        first_in_segment = tf.pad(seqio.utils.stateless_shuffle(
            tf.cast(tf.range(num_items - 1) < num_spans - 1, tf.int32), seed), [[1, 0]])
        return tf.math.segment_sum(tf.ones_like(first_in_segment), tf.cumsum(first_in_segment))

    noise_lengths = segmentation(num_noise, seeds[0])
    nonnoise_lengths = segmentation(length - num_noise, seeds[1])
    interleaved = tf.reshape(tf.stack([nonnoise_lengths, noise_lengths], axis=1), [num_spans * 2])
    starts = tf.cumsum(interleaved)[:-1]
    span_start = tf.math.unsorted_segment_sum(tf.ones_like(starts), starts, length)
    return tf.equal(tf.cumsum(span_start) % 2, 1)[:orig_length]


def noise_span_to_unique_sentinel(tokens, noise_mask, first_sentinel_id):
    """Each noise span -> one sentinel (the first span gets `first_sentinel_id`, then down)."""
    previous_is_noise = tf.pad(noise_mask[:-1], [[1, 0]])
    first_noise = tf.logical_and(noise_mask, tf.logical_not(previous_is_noise))
    subsequent_noise = tf.logical_and(noise_mask, previous_is_noise)
    sentinel = first_sentinel_id + 1 - tf.cumsum(tf.cast(first_noise, tokens.dtype))
    tokens = tf.where(first_noise, sentinel, tokens)
    return tf.boolean_mask(tokens, tf.logical_not(subsequent_noise))


def _content_seeds(tokens, seed: int):
    digest = tf.strings.to_hash_bucket_fast(
        tf.strings.reduce_join(tf.strings.as_string(tokens), separator=" "), 2**31 - 1)
    digest = tf.cast(digest, tf.int32)
    return tf.stack([[digest, seed], [digest, seed + 1]])


def _segments(ds: tf.data.Dataset, max_tokens: int) -> tf.data.Dataset:
    """Each row's `targets` tokens -> rows of at most `max_tokens` (T5's `split_tokens`)."""
    def split(ex):
        tokens = ex["targets"]
        n = tf.size(tokens)
        count = (n + max_tokens - 1) // max_tokens
        padded = tf.reshape(tf.pad(tokens, [[0, count * max_tokens - n]]), [count, max_tokens])
        lengths = tf.minimum(max_tokens, n - tf.range(count) * max_tokens)
        return {"targets": padded, "length": lengths}

    ds = ds.filter(lambda ex: tf.size(ex["targets"]) > 0).map(split, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.unbatch().map(lambda ex: {"targets": ex["targets"][: ex["length"]]})


def span_corruption(ds: tf.data.Dataset, sequence_length: Mapping[str, int] | None, output_features,
                    noise_density: float = NOISE_DENSITY, mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
                    seed: int = 0) -> tf.data.Dataset:
    """Tokenized `targets` rows -> span-corrupted {inputs, targets} rows (no EOS yet: the task's
    `append_eos_after_trim` adds it, within the lengths `random_spans_helper` leaves for it)."""
    lengths = dict(sequence_length or {})
    inputs_length = lengths.get("inputs") or DEFAULT_INPUTS_LENGTH
    tokens_length, targets_length = random_spans_helper(inputs_length, noise_density, mean_noise_span_length)
    if lengths.get("targets") and lengths["targets"] < targets_length:
        raise ValueError(f"span corruption of {inputs_length} input tokens needs targets length >= "
                         f"{targets_length} (TASK_FEATURE_LENGTHS has {lengths['targets']})")
    vocabulary = output_features["targets"].vocabulary
    max_spans = int(round(round(tokens_length * noise_density) / mean_noise_span_length))
    if vocabulary.extra_ids < max(1, max_spans):
        raise ValueError(f"span corruption needs >= {max(1, max_spans)} sentinel ids, the vocabulary has "
                         f"{vocabulary.extra_ids} extra ids: bind tasks.config.vocabulary_extra_ids.extra_ids = 100")
    first_sentinel = vocabulary.vocab_size - 1

    def corrupt(ex):
        tokens = ex["targets"]
        mask = random_spans_noise_mask(tf.size(tokens), noise_density, _content_seeds(tokens, seed),
                                       mean_noise_span_length)
        return {"inputs": noise_span_to_unique_sentinel(tokens, mask, first_sentinel),
                "targets": noise_span_to_unique_sentinel(tokens, tf.logical_not(mask), first_sentinel)}

    return _segments(ds, tokens_length).map(corrupt, num_parallel_calls=tf.data.AUTOTUNE)


def reconstruct(inputs: list[int], targets: list[int], vocab_size: int, extra_ids: int) -> list[int]:
    """The original tokens of a span-corrupted pair (tests, inspection): each sentinel of the
    inputs is replaced by the tokens that follow the same sentinel in the targets."""
    def is_sentinel(token: int) -> bool:
        return vocab_size - extra_ids <= token < vocab_size

    spans: dict[int, list[int]] = {}
    current: list[int] | None = None
    for token in targets:
        if is_sentinel(token):
            current = spans.setdefault(token, [])
        elif current is not None:
            current.append(token)
    return [t for token in inputs for t in (spans.get(token, []) if is_sentinel(token) else [token])]
