"""`t5x-sbs vocab` counts and prints every text it leaves out; a broken teacher file fails."""
from __future__ import annotations

import json

from t5x_sbs.cli import main

COMPLETIONS = ["Two and one make three. The answer is (2 + 1).",
               "No answer phrase here at all.",  # unparseable: no rationale to learn from
               "Five less one is four. The answer is (5 - 1).",
               "The answer is (7 * 1)."]  # parsed, but the rationale is empty


def _svamp(root, completions, test_split=True):
    (root / "svamp" / "llm").mkdir(parents=True)
    rows = [{"input": f"Question {i}?", "label": f"( {i}.0 + 1.0 )"} for i in range(4)]
    for split in ("train", "test") if test_split else ("train",):
        (root / "svamp" / f"svamp_{split}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "svamp" / "llm" / "train_CoT_0.json").write_text(json.dumps(completions))
    return root


def _vocab(root, *extra):
    return main(["vocab", "--data_dir", str(root), "--dataset", "svamp", "--output", str(root / "v.model"),
                 "--vocab_size", "60", *extra])


def test_skipped_texts_are_counted_by_reason(tmp_path, capsys):
    root = _svamp(tmp_path, COMPLETIONS)
    assert _vocab(root, "--splits", "train,test") == 0
    out = capsys.readouterr().out
    # 4 inputs + 4 labels per split, 2 rationales of train, 10 prefix lines; test has no PaLM file
    assert "from 28 texts; skipped 2 texts: 1 teacher outputs without a rationale (ok), " \
           "1 teacher outputs without a rationale (unparseable)" in out, out
    assert "no teacher rationales for test: " in out and "test_CoT_0.json: no stored PaLM outputs" in out, out


def test_nothing_skipped_says_so(tmp_path, capsys):
    root = _svamp(tmp_path, [COMPLETIONS[0]] * 4, test_split=False)
    assert _vocab(root) == 0
    assert "from 22 texts; none skipped" in capsys.readouterr().out


def test_short_teacher_list_fails_instead_of_being_ignored(tmp_path, capsys):
    root = _svamp(tmp_path, COMPLETIONS[:3], test_split=False)
    assert _vocab(root) == 2
    err = capsys.readouterr().err
    assert "train_CoT_0.json: field '[3]': 3 PaLM outputs in 1 files for 4 svamp train examples" in err, err
    assert not (root / "v.model").exists()
