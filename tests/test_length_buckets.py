"""Length-bucketed batches (t5x_sbs.trainer.length_buckets): the bucket ladder, length-sorted windows
that hold the stream's own units, process-count independence, O(1) resume in the middle of a
window, the shared-encoder layout, and a real gin run that trains and resumes on them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from t5x_sbs.names import LABEL_TASK_ID, RATIONALE_TASK_ID
from t5x_sbs.trainer import input_pipeline, length_buckets, shared_encoder
from test_shared_encoder import PREFIX, _task_rows
from trainer_fixtures import examples


def test_buckets_grow_by_at_most_a_quarter_and_end_at_the_feature_length():
    assert length_buckets.bucket_lengths(100) == [8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 100]
    assert length_buckets.bucket_lengths(6) == [6]
    ladder = length_buckets.bucket_lengths(512)
    assert all(a < b <= 1.25 * a for a, b in zip(ladder, ladder[1:])) and ladder[-1] == 512
    assert [length_buckets.bucket_for(n, 100) for n in (0, 8, 9, 13, 97)] == [8, 8, 10, 14, 100]
    with pytest.raises(ValueError, match="longer than the feature length 100"):
        length_buckets.bucket_for(101, 100)
    assert length_buckets.batch_widths([(9, 3), (30, 40)], (64, 64)) == (32, 40)


def test_window_sorts_by_length_keeps_units_whole_and_shuffles_batch_order():
    rng = np.random.default_rng(0)
    units = [[(int(rng.integers(1, 60)), int(t))] * 2 for t in rng.integers(1, 60, size=40)]  # paired: 2 rows
    batches = length_buckets.cut_window(units, 8, np.random.default_rng(1), (64, 64))
    assert sorted(u for b in batches for u in b) == list(range(40))  # every unit once
    assert all(sum(len(units[u]) for u in b) <= 8 for b in batches) and len(batches) == 10
    # sorted: a batch's target bucket range does not overlap another's (targets first, then inputs)
    buckets = [[length_buckets.bucket_for(units[u][0][1], 64) for u in b] for b in batches]
    spans = sorted((min(b), max(b)) for b in buckets)
    assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(spans, spans[1:]))
    again = length_buckets.cut_window(units, 8, np.random.default_rng(1), (64, 64))
    assert batches == again  # the seed decides the order
    assert batches != length_buckets.cut_window(units, 8, np.random.default_rng(2), (64, 64))
    with pytest.raises(ValueError, match="BATCH_SIZE=1 rows cannot hold one example's 2 rows"):
        length_buckets.cut_window(units, 1, np.random.default_rng(1), (64, 64))


def _bucketed(rows, batch=4, *, state=None, process=(0, 1), window=3, layout="shared_encoder"):
    lengths = {"inputs": 16, "targets": 24}
    if layout == "shared_encoder":
        it = shared_encoder.SharedEncoderBatches([rows], np.ones(1), lengths, batch, rationale_prefix=PREFIX,
                                                 pack=False, seed=3, state=state, bucket_window=window)
    else:
        it = input_pipeline.TrainBatches([rows], np.ones(1), lengths, batch, pack=layout == "paired_packed",
                                         seed=3, state=state, bucket_window=window)
    size = batch // process[1]
    it.rows_slice = slice(process[0] * size, (process[0] + 1) * size)  # as process `index` of `count` would
    return it


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_equal(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{what} {key}")


def _inputs(batches, task=None) -> list[tuple]:
    """The distinct segments' input tokens of the batches' rows (of one task's rows if given), sorted."""
    out = []
    for b in batches:
        segments = b.get("encoder_segment_ids", (b["encoder_input_tokens"] > 0).astype(np.int32))
        for tokens, seg, tasks in zip(b["encoder_input_tokens"], segments, b["decoder_task_ids"]):
            for s in set(seg[seg > 0].tolist()):
                if task is None or task == tasks.max() or "decoder_encoder_segment_ids" in b:
                    out.append(tuple(tokens[seg == s]))
    return sorted(out)


@pytest.mark.parametrize("layout", ["shared_encoder", "paired", "paired_packed"])
def test_windows_hold_the_streams_units_padded_to_buckets(layout):
    rows = _task_rows(examples(seed=7, n=40))
    window = 3
    bucketed = _take(_bucketed(rows, 4, window=window, layout=layout), window)
    plain = input_pipeline.TrainBatches([rows], np.ones(1), {"inputs": 16, "targets": 24}, 4, pack=False, seed=3)
    # The unbucketed stream's units of one window, in stream order: a plain batch holds 2 (two rows
    # each); a bucketed one 2 unpacked, else 4 (one a row).
    drawn = _take(plain, window * (1 if layout == "paired" else 2))
    if layout == "paired_packed":  # both rows of a unit, packed as two segments of one row
        assert _inputs(bucketed) == _inputs(drawn)
    else:
        assert _inputs(bucketed) == (_inputs(drawn, LABEL_TASK_ID) if layout == "shared_encoder" else _inputs(drawn))
    for batch in bucketed:
        longest_in = int((batch["encoder_input_tokens"] > 0).sum(1).max())
        longest_out = int((batch["decoder_target_tokens"] > 0).sum(1).max())
        assert batch["encoder_input_tokens"].shape[1] == length_buckets.bucket_for(longest_in, 16)
        assert batch["decoder_target_tokens"].shape[1] == length_buckets.bucket_for(longest_out, 24)
        if layout == "paired":  # one example a row; each example's label and rationale rows in one batch
            assert _inputs([batch], LABEL_TASK_ID) == _inputs([batch], RATIONALE_TASK_ID) != []
        else:  # one example a row: two decoder segments (label, rationale) over one input each
            used = batch["decoder_segment_ids"] > 0
            assert set(np.unique(batch["decoder_segment_ids"][used])) == {1, 2}
            first = batch["decoder_task_ids"][batch["decoder_segment_ids"] == 1]
            assert set(first[first > 0].tolist()) == {LABEL_TASK_ID}


@pytest.mark.parametrize("processes", [2, 4])
def test_global_batches_do_not_depend_on_the_process_count(processes):
    rows = _task_rows(examples(seed=9, n=30))
    one = _take(_bucketed(rows, 8), 7)
    parts = [_take(_bucketed(rows, 8, process=(i, processes)), 7) for i in range(processes)]
    for step, batch in enumerate(one):
        _assert_equal(batch, {k: np.concatenate([p[step][k] for p in parts]) for k in batch}, f"step {step}")


@pytest.mark.parametrize("taken", [2, 3, 5])  # inside the first window, at its end, inside the second
def test_resume_inside_a_window_is_exact(taken):
    rows = _task_rows(examples(seed=11, n=30))
    it = _bucketed(rows)
    _take(it, taken)
    state = json.loads(json.dumps(it.state()))
    assert state["batches_consumed"] == taken and state["window_offset"] == taken % 3
    for step, (a, b) in enumerate(zip(_take(it, 4), _take(_bucketed(rows, state=state), 4))):
        _assert_equal(a, b, f"step {taken + step}")
    if state["window_offset"]:  # another window size would cut the window's units otherwise
        with pytest.raises(ValueError, match="inside a window of 3 length-bucketed batches: resume with "
                                             "RunConfig.length_bucket_window = 3 \\(now 4\\)"):
            _bucketed(rows, state=state, window=4)


def test_a_step_by_step_mixture_in_buckets_is_warned_about():
    assert "different batches" in length_buckets.layout_warning("mixture", "svamp_sbs_llm")
    assert length_buckets.layout_warning("mixture", "svamp_label_llm") is None  # one task: nothing to split
    assert length_buckets.layout_warning("paired", "svamp_sbs_llm_paired") is None
    assert length_buckets.layout_warning("shared_encoder", "svamp_sbs_llm_paired") is None


@pytest.mark.shared_data
def test_gin_run_trains_resumes_and_counts_its_own_widths(tmp_path, shared_data):
    from test_trainer_loop import read_jsonl, run_train, svamp_bindings

    extra = {"LOSS_MODE": "'shared_encoder'", "EVAL_EVERY": 4,
             "TASK_FEATURE_LENGTHS": "{'inputs': 256, 'targets': 256}",
             "RunConfig.length_bucket_window": 3, "PEAK_FLOPS_PER_DEVICE": 1e11}
    assert run_train(svamp_bindings(tmp_path, shared_data, 4, **extra))["step"] == 4
    from t5x_sbs import checkpoints
    state = checkpoints.read_json_item(tmp_path / "4", "data_state")
    assert state["batches_consumed"] == 4 and state["window_offset"] == 1  # resumes inside a window
    out = run_train(svamp_bindings(tmp_path, shared_data, 8, **extra))
    assert out["step"] == 8
    lines = [x for x in read_jsonl(tmp_path / "metrics.jsonl") if "loss" in x]
    assert [x["step"] for x in lines] == list(range(1, 9))
    assert lines[-1]["loss"] < lines[0]["loss"], [x["loss"] for x in lines]
    # Each step's tokens are counted at its bucket widths (the feature lengths would give 8 × 512).
    ladder = length_buckets.bucket_lengths(256)
    tokens = [round(x["tokens_per_second"] * x["seconds_per_step"]) for x in lines]
    assert all(t % 8 == 0 and any(t // 8 - a in ladder for a in ladder) for t in tokens), tokens
    assert len(set(tokens)) > 1 and min(tokens) < 8 * 512, tokens
