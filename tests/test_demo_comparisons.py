"""The demo's paired comparisons: like against like (same gold labels, same teacher labels) when
both arms ran, then the teacher-label student against gold-label finetuning."""
import numpy as np

from t5x_sbs.experiments import demo


def rows_for(accuracies: dict[str, float], questions: int = 400, seeds: int = 3) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"method": m, "seed": s, "test_correct": (rng.random(questions) < acc).astype(int).tolist()}
            for m, acc in accuracies.items() for s in range(seeds)]


def test_like_against_like_first_and_only_arms_that_ran():
    rows = rows_for({"standard_finetune": 0.6, "standard_distill": 0.4, "sbs_gold": 0.7, "sbs_teacher": 0.5})
    pairs = demo.comparisons(rows)
    assert [(p["a"], p["b"]) for p in pairs] == [("sbs_gold", "standard_finetune"), ("sbs_teacher", "standard_distill"),
                                                 ("sbs_teacher", "standard_finetune")]
    gold, teacher, mixed = (p["result"] for p in pairs)
    assert 0.05 < gold.difference < 0.15 and gold.low > 0  # +10 points on 400 questions x 3 seeds
    assert 0.05 < teacher.difference < 0.15 and teacher.low > 0
    assert mixed.difference < 0 and mixed.high < 0
    two_arms = demo.comparisons(rows_for({"standard_finetune": 0.6, "sbs_teacher": 0.5}))
    assert [(p["a"], p["b"]) for p in two_arms] == [("sbs_teacher", "standard_finetune")]
    assert demo.comparisons(rows_for({"standard_finetune": 0.6})) == []
