"""The weighted per-task loss against an independent numpy computation on unpacked examples.

The reference never sees a batch: it takes each example's label and rationale target tokens with
their logits, concatenates each task's tokens over the examples, and applies the formula
L = mean CE(label tokens) + λ · mean CE(rationale tokens). The loss under test sees the same tokens
laid out as the trainer would: paired rows or a shuffled mixture, padded or packed.
"""
import numpy as np
import pytest

from t5x_sbs import names
from t5x_sbs.trainer import losses

V = 37
LENGTH = 24


def _examples(seed, n=6):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ex = {}
        for task, (lo, hi) in {"label": (1, 4), "rationale": (3, 11)}.items():
            k = int(rng.integers(lo, hi))
            ex[task] = (rng.integers(0, V, size=k), rng.normal(size=(k, V)).astype(np.float32) * 3)
        out.append(ex)
    return out


def _ref_token_loss(logits, targets, z_loss=0.0, smoothing=0.0):
    logits = logits.astype(np.float64)
    log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    logp = logits - log_z[:, None]
    if smoothing:
        conf, low = 1 - smoothing, smoothing / (V - 1)
        soft = np.full_like(logp, low)
        soft[np.arange(len(targets)), targets] = conf
        floor = -(conf * np.log(conf) + (V - 1) * low * np.log(low + 1e-20))
        ce = -(soft * logp).sum(-1) - floor
    else:
        ce = -logp[np.arange(len(targets)), targets]
    return ce + z_loss * log_z**2


def _reference(examples, weights, **kw):
    total = 0.0
    for task, task_id in names.TASK_IDS.items():
        per_token = [_ref_token_loss(ex[task][1], ex[task][0], **kw) for ex in examples]
        tokens = np.concatenate(per_token)
        total += weights[task_id] * (tokens.mean() if len(tokens) else 0.0)
    return total


def _layout(sequences, packed):
    """sequences: (task_id, targets, logits). Rows padded with junk logits; packed = greedy fill."""
    rows, row = [], []
    for seq in sequences:
        used = sum(len(s[1]) for s in row)
        if row and (not packed or used + len(seq[1]) > LENGTH):
            rows.append(row)
            row = []
        row.append(seq)
    rows.append(row)
    rng = np.random.default_rng(0)
    targets = np.zeros((len(rows), LENGTH), np.int32)
    task_ids = np.zeros((len(rows), LENGTH), np.int32)
    logits = rng.normal(size=(len(rows), LENGTH, V)).astype(np.float32) * 5  # padding junk
    for r, row in enumerate(rows):
        pos = 0
        for task_id, tgt, lg in row:
            targets[r, pos : pos + len(tgt)] = tgt
            task_ids[r, pos : pos + len(tgt)] = task_id
            logits[r, pos : pos + len(tgt)] = lg
            pos += len(tgt)
    return logits, targets, task_ids


def _sequences(examples, mode):
    seqs = []
    for ex in examples:  # paired: each example's label row then its rationale row, adjacent
        for task, task_id in names.TASK_IDS.items():
            seqs.append((task_id, ex[task][0], ex[task][1]))
    if mode == "mixture":
        order = np.random.default_rng(1).permutation(len(seqs))
        seqs = [seqs[i] for i in order]
    return seqs


@pytest.mark.parametrize("mode", ["paired", "mixture"])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 3.0])
def test_loss_matches_independent_formula(mode, packed, lam):
    examples = _examples(seed=int(lam * 10))
    logits, targets, task_ids = _layout(_sequences(examples, mode), packed)
    if packed:
        assert logits.shape[0] < 2 * len(examples)  # really packed
    weights = losses.task_weights(rationale_weight=lam)
    got, aux = losses.weighted_task_loss(logits, targets, task_ids, weights, z_loss=0.0)
    want = _reference(examples, weights)
    np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-5)
    assert int(aux["label_tokens"]) == sum(len(ex["label"][0]) for ex in examples)
    assert int(aux["rationale_tokens"]) == sum(len(ex["rationale"][0]) for ex in examples)


@pytest.mark.parametrize("z_loss,smoothing", [(1e-4, 0.0), (1e-2, 0.1), (0.0, 0.2)])
def test_z_loss_and_label_smoothing_follow_t5x(z_loss, smoothing):
    examples = _examples(seed=7)
    logits, targets, task_ids = _layout(_sequences(examples, "mixture"), packed=True)
    weights = losses.task_weights(rationale_weight=0.7)
    got, _ = losses.weighted_task_loss(
        logits, targets, task_ids, weights, z_loss=z_loss, label_smoothing=smoothing
    )
    want = _reference(examples, weights, z_loss=z_loss, smoothing=smoothing)
    np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-5)


def test_alpha_spelling_is_lambda_one_halved():
    examples = _examples(seed=3)
    logits, targets, task_ids = _layout(_sequences(examples, "paired"), packed=False)
    lam1, _ = losses.weighted_task_loss(logits, targets, task_ids, losses.task_weights(rationale_weight=1.0))
    alpha, _ = losses.weighted_task_loss(logits, targets, task_ids, losses.task_weights(alpha=0.5))
    np.testing.assert_allclose(float(alpha), 0.5 * float(lam1), rtol=1e-6)
    assert losses.task_weights(alpha=0.2) == {1: 0.2, 2: 0.8}


def test_label_only_batch_is_standard_finetuning_and_empty_task_adds_zero():
    examples = _examples(seed=4)
    seqs = [s for s in _sequences(examples, "paired") if s[0] == names.LABEL_TASK_ID]
    logits, targets, task_ids = _layout(seqs, packed=True)
    got, aux = losses.weighted_task_loss(logits, targets, task_ids, losses.task_weights(rationale_weight=5.0), z_loss=0.0)
    want = np.concatenate([_ref_token_loss(ex["label"][1], ex["label"][0]) for ex in examples]).mean()
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    assert int(aux["rationale_tokens"]) == 0


def test_microbatch_losses_sum_to_full_batch_loss_with_global_counts():
    examples = _examples(seed=5, n=8)
    logits, targets, task_ids = _layout(_sequences(examples, "paired"), packed=False)
    weights = losses.task_weights(rationale_weight=0.8)
    full, _ = losses.weighted_task_loss(logits, targets, task_ids, weights)
    counts = losses.task_token_counts(task_ids)
    parts = [
        losses.weighted_task_loss(logits[s], targets[s], task_ids[s], weights, token_counts=counts)[0]
        for s in (slice(0, 4), slice(4, 8), slice(8, 16))
    ]
    np.testing.assert_allclose(float(sum(parts)), float(full), rtol=1e-5)


def test_bad_weights_are_rejected():
    with pytest.raises(ValueError, match="exactly one"):
        losses.task_weights(rationale_weight=1.0, alpha=0.5)
    with pytest.raises(ValueError, match="alpha"):
        losses.task_weights(alpha=1.5)
    with pytest.raises(ValueError, match="λ"):
        losses.task_weights(rationale_weight=-1.0)
