"""`t5x-sbs demo`: the main job, end to end, offline on a CPU.

1. generate the built-in arithmetic task (train/validation/test, seeded);
2. annotate train with the `scripted:` teacher through the rationale store and ledger;
3. pretrain the student once with span corruption (`experiments.pretrained`: ../shared/data's
   train text + the task's train inputs; kept under --pretrain_dir by a hash of its settings and
   reused), then train it three ways, each for every seed, to early stopping on validation
   accuracy: standard finetuning (gold labels), standard distillation (teacher labels),
   distilling step-by-step (teacher labels + rationales);
4. score each from the label prefix alone on validation and test (the checkpoint selected
   on validation), export the best student to Hugging Face format and answer a test
   question with transformers;
5. print the table (mean ± 95 % CI over seeds, and step-by-step − finetuning with a paired
   bootstrap on the same test questions); write results.md/.csv/.png/.json to --out_dir.

The same command runs the real thing: `--teacher gemini:MODEL` (a key in GEMINI_API_KEY),
`--dataset svamp --data_dir ../shared/data` (a paper-layout dataset), `--initial_checkpoint
DIR --model_gin gin/models/t5_1_1/base.gin --spm_path DIR/spiece.model` (pretrained T5).
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import time

import numpy as np

from t5x_sbs.checkpoints import model_files
from t5x_sbs.convert.hf_export import export_hf
from t5x_sbs.data import arith
from t5x_sbs.experiments import plots, preparation, pretrained, runner, stats, tables, workers
from t5x_sbs.experiments.preparation import DataSettings, Say, say_line
from t5x_sbs.names import mixture_name
from t5x_sbs.tasks import config as task_config
from t5x_sbs.teacher import annotation

# The paper's four arms, so that each step-by-step student has its like-for-like baseline (COMPARISONS).
DEMO_METHODS = ("standard_finetune", "standard_distill", "sbs_gold", "sbs_teacher")

# `--quick`: a smaller version (see the flag's help in `t5x_sbs.cli.demo`).
QUICK = {"train_size": 600, "eval_size": 200, "train_steps": 300, "eval_every": 50, "early_stopping_patience": 2,
         "pretrain_steps": 200, "pretrain_corpus": "task"}


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Every setting of one demo run (the `t5x-sbs demo` flags, typed; defaults are the flags')."""

    out_dir: str = "runs/demo"
    dataset: str = "arith"
    data_dir: str = ""
    teacher: str = "scripted:arith"
    teacher_ask: annotation.AskSettings = dataclasses.field(default_factory=annotation.AskSettings)
    teacher_seed: int | None = None
    methods: tuple[str, ...] = DEMO_METHODS
    model_gin: str = "configs/demo_student_d64.gin"  # d128: configs/demo_student.gin (README: student size)
    initial_checkpoint: str = ""
    spm_path: str = ""
    vocab_size: int = 400
    # a cap early stopping should reach first: at 3,000 (one example a row) the finetuning and
    # gold-label step-by-step students all ran to it; at 6,000 they stop at 3,000-4,800 (README)
    train_steps: int = 6000
    batch_size: int = 16
    eval_every: int = 150
    learning_rate: float = 5e-3
    dropout_rate: float | None = None  # the students' (not pretraining's); None: --model_gin's (0.0)
    rationale_weight: float = 1.0
    inputs_length: int = 128
    targets_length: int = 32
    seed: int = 0
    train_size: int = arith.DEFAULT_SIZES["train"]
    eval_size: int = arith.DEFAULT_SIZES["test"]
    arith_difficulty: arith.Difficulty = arith.Difficulty()
    seeds: tuple[int, ...] = (0, 1, 2)
    # validation (300 questions) plateaus for 300+ steps and then climbs: patience 2 stopped
    # students there (README, The main job); 4 decodes = 600 steps without a better one
    early_stopping_patience: int = 4
    pretrain_steps: int = 3000  # 600 (0.2 epochs of the corpus) left the student unable to copy numbers
    pretrain_batch_size: int = 32
    pretrain_corpus: str = "shared"
    pretrain_dir: str = "runs/pretrained"
    samples_mode: str = "first"  # tasks.config.teacher_reading.samples: first | vote | all
    jobs: int = 0  # students trained at a time, each in its own process (0: workers.default_jobs())
    # One example a row, so every method sees batch_size examples a step: packed rows gave finetuning
    # 2.6x the examples a step of step-by-step (README, The main job); 0: packed rows.
    length_bucket_window: int = 32
    # How step-by-step students lay out label + rationale (names.LOSS_MODES): in buckets, one encoder
    # pass scored above two rows on validation (README, Experiments: equal examples a step).
    sbs_loss_mode: str = "shared_encoder"

    def quick(self) -> "DemoConfig":
        return dataclasses.replace(self, **QUICK)

    @property
    def data(self) -> DataSettings:
        return DataSettings(out_dir=self.out_dir, dataset=self.dataset, data_dir=self.data_dir, teacher=self.teacher,
                            seed=self.seed, train_size=self.train_size, eval_size=self.eval_size,
                            arith_difficulty=self.arith_difficulty,
                            vocab_size=self.vocab_size, spm_path=self.spm_path, ask=self.teacher_ask,
                            teacher_seed=self.teacher_seed, samples_mode=self.samples_mode)


@dataclasses.dataclass(frozen=True)
class Student:
    """The checkpoint every method starts from (empty: from scratch) and its vocabulary."""

    initial_checkpoint: str
    vocab_rows: int | None
    spm_path: str | None


def student_spec(config: DemoConfig, method: str, seed: int, spm_path: str, data_dir: str,
                 bindings: tuple[str, ...], student: Student) -> runner.TrainSpec:
    mixture_method, source = tables.check_method(method)
    loss_mode = config.sbs_loss_mode if mixture_method == "sbs" else "mixture"  # a standard task has one row
    return runner.TrainSpec(
        model_dir=os.path.join(config.out_dir, "models", f"{method}_seed{seed}"),
        mixture=mixture_name(config.dataset, mixture_method, source),
        model_gin=config.model_gin, spm_path=spm_path, data_dir=data_dir if config.dataset != "arith" else "",
        train_steps=config.train_steps, batch_size=config.batch_size,
        feature_lengths=(("inputs", config.inputs_length), ("targets", config.targets_length)),
        rationale_weight=config.rationale_weight, seed=seed, eval_every=config.eval_every,
        learning_rate=config.learning_rate, initial_checkpoint=student.initial_checkpoint,
        vocab_size=student.vocab_rows, early_stopping_patience=config.early_stopping_patience,
        length_bucket_window=config.length_bucket_window, loss_mode=loss_mode, dropout_rate=config.dropout_rate,
        bindings=bindings)


def train_and_score(config: DemoConfig, method: str, seed: int, spm_path: str, data_dir: str,
                    bindings: tuple[str, ...], student: Student, say: Say = say_line) -> dict:
    """Step 3b + 4a: one student and seed; returns its result row (with per-question correctness)."""
    mixture_method, _ = tables.check_method(method)
    spec = student_spec(config, method, seed, spm_path, data_dir, bindings, student)
    with workers.student_log(os.path.join(spec.model_dir, "train.log")):
        scores = runner.train_and_score(spec)
    row = {"dataset": config.dataset, "method": method, "fraction": 1.0, "size": size_name(config.model_gin),
           "rationale_weight": config.rationale_weight if mixture_method == "sbs" else 0.0, "seed": seed,
           "pretrained": student.initial_checkpoint, "jobs": config.jobs, **scores}
    say(f"      {tables.METHOD_TITLES[method]}, seed {seed}: {row['steps_run']} steps (best {row['best_step']}), "
        f"validation {100 * row['val_accuracy']:.1f}%, test {100 * row['test_accuracy']:.1f}% ({row['wall_s']:.0f} s)")
    return row


def size_name(model_gin: str) -> str:
    """A student model's name in result rows: its gin file's (`demo_student_d64`)."""
    return os.path.basename(model_gin).removesuffix(".gin")


def layout(config: DemoConfig) -> str:
    """How the students' batches are laid out, in words (the run's banner and results.md)."""
    rows = (f"length buckets (window {config.length_bucket_window}, one example a row)"
            if config.length_bucket_window else "packed rows")
    return f"{rows}; step-by-step as {config.sbs_loss_mode}"


def student_bindings(config: DemoConfig, data_dir: str, store: str) -> tuple[str, ...]:
    """What a student needs before it trains, in this process or a fresh worker (which has seen
    neither): the demo's compilation cache and its registered tasks (their gin bindings)."""
    runner.enable_compilation_cache(os.path.join(config.out_dir, "jax_cache"))
    return preparation.register(config.data, data_dir, store)


def train_student(config: DemoConfig, spm_path: str, data_dir: str, store: str, student: Student,
                  cell: tuple[str, int]) -> dict:
    """One (method, seed) cell, in this process or a fresh worker."""
    bindings = student_bindings(config, data_dir, store)
    return train_and_score(config, *cell, spm_path, data_dir, bindings, student)


def train_students(config: DemoConfig, spm_path: str, data_dir: str, store: str, student: Student) -> list[dict]:
    """Every method x seed, `config.jobs` at a time (already resolved: 0 trains here, one by
    one); rows in method, seed order."""
    cells = [(method, seed) for method in config.methods for seed in config.seeds]
    train = functools.partial(train_student, config, spm_path, data_dir, store, student)
    done = dict(workers.run_each(train, cells, config.jobs))
    return [done[cell] for cell in cells]


def student_vocabulary(config: DemoConfig, data_dir: str, store: str, say: Say = say_line) -> str | None:
    """--spm_path, else the initial checkpoint's own spiece.model (an HF dir's, or the one kept
    beside our checkpoint), else None when our pretraining trains one, else one trained on the task."""
    given = config.spm_path or model_files.initial_checkpoint_vocabulary(config.initial_checkpoint)
    if given:
        return given
    if config.pretrain_steps > 0 and not config.initial_checkpoint:
        return None
    return preparation.vocabulary(config.data, data_dir, store, say)


def pretrained_student(config: DemoConfig, data_dir: str, spm_path: str | None, say: Say = say_line) -> Student:
    """Step 3a': the student the methods start from: the initial checkpoint, or our own
    span-corruption pretraining (reused when its settings match), or none (pretrain_steps 0)."""
    if config.initial_checkpoint:  # its embedding rows, which need not be its vocabulary's padded size
        return Student(config.initial_checkpoint, model_files.initial_checkpoint_vocab_rows(config.initial_checkpoint),
                       spm_path)
    if config.pretrain_steps <= 0:
        return Student("", None, spm_path)
    task_texts = [e.text for e in annotation.load_examples(config.dataset, data_dir, "train")]
    shared = (config.data_dir or task_config.data_dir()) if config.pretrain_corpus == "shared" else None
    docs, where = pretrained.corpus_texts(task_texts, shared)
    spec = pretrained.PretrainSpec(root=config.pretrain_dir, model_gin=config.model_gin, steps=config.pretrain_steps,
                                   batch_size=config.pretrain_batch_size, inputs_length=config.inputs_length,
                                   vocab_size=max(config.vocab_size, 1000) if shared else config.vocab_size, seed=0)
    result = pretrained.pretrain(spec, docs, say=say)
    say(f"      pretrained student ({where}; {'reused' if result.reused else 'trained'}): {result.model_dir}")
    return Student(result.model_dir, result.vocab_rows, result.spm_path)


def export_and_answer(config: DemoConfig, row: dict, spm_path: str, data_dir: str, say: Say = say_line) -> dict:
    """Step 4b: the best student -> HF dir -> transformers answers one test question."""
    import torch
    import transformers

    hf_dir = os.path.join(config.out_dir, "hf_student")
    export_hf(runner.best_step_dir(row["model_dir"]), hf_dir, vocab=spm_path)
    model = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    example = annotation.load_examples(config.dataset, data_dir, "test")[0]
    prompt = task_config.prefixes()["label"] + example.text
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=config.targets_length, do_sample=False)
    answer = tokenizer.decode(out[0], skip_special_tokens=True).strip()
    say(f"[4/5] exported {row['method']} -> {hf_dir}; transformers answers\n      {prompt!r}\n"
        f"      -> {answer!r} (gold {example.gold!r})")
    return {"hf_dir": hf_dir, "question": prompt, "answer": answer, "gold": example.gold}


def majority_baseline(config: DemoConfig, data_dir: str) -> str:
    """What "chance" means here: always answering the most frequent gold train label."""
    train = collections.Counter(e.gold for e in annotation.load_examples(config.dataset, data_dir, "train"))
    label = train.most_common(1)[0][0]
    test = [e.gold for e in annotation.load_examples(config.dataset, data_dir, "test")]
    return (f"Baseline: always answering the most frequent train label ({label!r}) scores "
            f"{100 * sum(g == label for g in test) / max(1, len(test)):.1f}% on test.")


def write_outputs(config: DemoConfig, rows: list[dict], answer: dict, teacher_store: str, data_dir: str,
                  say: Say = say_line) -> None:
    """Step 5: table on stdout; Markdown, CSV, PNG and a JSON summary (every seed's row) in out_dir."""
    md = tables.ci_table(rows)
    pairs = comparisons(rows)
    for pair in pairs:
        md += (f"\n\n{tables.METHOD_TITLES[pair['a']]} − {tables.METHOD_TITLES[pair['b']]} ({pair['why']}): "
               f"{pair['result']}.")
    md += "\n\n" + majority_baseline(config, data_dir)
    paths = {k: os.path.join(config.out_dir, f"results.{k}") for k in ("md", "csv", "png", "json")}
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(f"# Demo results ({config.dataset}, teacher {config.teacher}; {layout(config)})\n\n{md}\n\n"
                f"HF export answer: {answer['question']!r} -> {answer['answer']!r} (gold {answer['gold']!r})\n")
    tables.write_csv(rows, paths["csv"])
    plots.plot_methods_bar(rows, paths["png"], f"{config.dataset}: test accuracy from the label prefix")
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump({"rows": rows, "hf_answer": answer, "teacher_store": teacher_store,
                   "sbs_minus_finetune": _asdict(compare(rows)),
                   "comparisons": [{**pair, "result": _asdict(pair["result"])} for pair in pairs]},
                  f, indent=1, default=str)
    say("[5/5] results (test accuracy at the validation-selected checkpoint, answered from the label prefix):\n")
    say(md)
    say("\n" + "\n".join(f"wrote {p}" for p in paths.values()))


# Paired comparisons the table prints when both arms ran: like against like first (the paper's
# Fig. 4 compares with finetuning on the same human labels, Fig. 5 with distillation on the same
# LLM labels), then the teacher-label student against gold-label finetuning.
COMPARISONS = (("sbs_gold", "standard_finetune", "same gold labels"),
               ("sbs_teacher", "standard_distill", "same teacher labels"),
               ("sbs_teacher", "standard_finetune", "teacher labels + rationales vs gold labels"))


def comparisons(rows: list[dict]) -> list[dict]:
    """Every COMPARISONS pair whose two arms ran: {a, b, why, result}."""
    found = [(a, b, why, compare(rows, a, b)) for a, b, why in COMPARISONS]
    return [{"a": a, "b": b, "why": why, "result": result} for a, b, why, result in found if result is not None]


def compare(rows: list[dict], a: str = "sbs_teacher", b: str = "standard_finetune", correct: str = "test_correct"):
    """a − b on the same test questions (seeds averaged per question; `correct`: each row's 0/1 list
    over them), or None without both."""
    by = {m: np.array([r[correct] for r in rows if r["method"] == m]) for m in (a, b)}
    if not all(len(v) for v in by.values()):
        return None
    return stats.paired_bootstrap(by[a], by[b])


def _asdict(result) -> dict | None:
    return dataclasses.asdict(result) if result is not None else None


def run_demo(config: DemoConfig, say: Say = say_line) -> None:
    """The five steps (module docstring); everything lands under config.out_dir."""
    start = time.time()
    os.makedirs(config.out_dir, exist_ok=True)
    for method in config.methods:
        tables.check_method(method)
    runner.enable_compilation_cache(os.path.join(config.out_dir, "jax_cache"))
    data = config.data
    data_dir = preparation.prepare_data(data, say)
    store = preparation.annotate(data, data_dir, say)
    preparation.register(data, data_dir, store)  # a bad store fails here, before pretraining (workers register again)
    student = pretrained_student(config, data_dir, student_vocabulary(config, data_dir, store, say), say)
    spm_path = student.spm_path
    jobs = config.jobs or workers.default_jobs()
    say(f"[3/5] training {len(config.methods)} students x {len(config.seeds)} seeds ({config.model_gin}, at most "
        f"{config.train_steps} steps, early stopping patience {config.early_stopping_patience}, batch {config.batch_size}, "
        f"{layout(config)}), "
        f"{jobs} at a time" + (" (each logs to models/<method>_seed<seed>/train.log)" if jobs > 1 else ""))
    rows = train_students(dataclasses.replace(config, jobs=jobs), spm_path, data_dir, store, student)
    best = max(rows, key=lambda r: r["val_accuracy"])  # selected on validation only
    answer = export_and_answer(config, best, spm_path, data_dir, say)
    write_outputs(config, rows, answer, store, data_dir, say)
    say(f"demo finished in {time.time() - start:.0f} s")
