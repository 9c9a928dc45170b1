"""Register a user's own dataset from JSONL files, without writing SeqIO code.

    from t5x_sbs.tasks.custom import register_jsonl_dataset
    register_jsonl_dataset("mytask", train_path="train.jsonl", test_path="test.jsonl",
                           input_fields=("question",), label_field="answer",
                           teacher_file="stores/mytask.jsonl")

or from gin: `tasks.custom.register_jsonl_dataset.name = 'mytask'` ... and call it (e.g.
`import t5x_sbs.tasks.custom` plus a `@tasks.custom.register_jsonl_dataset()` binding evaluated by the
run script). This registers `mytask_label_gold`, `mytask_sbs_llm`, ... like any built-in dataset.
Ids are the `id_field` when given, else `<split>-<line index>`; a missing validation file means
a 10% carve-out of train by id hash.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import gin

from t5x_sbs.data import sources
from t5x_sbs.records import Example
from t5x_sbs.tasks import config
from t5x_sbs.tasks.registry import DatasetSpec, METRICS, register_dataset
from t5x_sbs.teacher import parsing, store_reading


def read_jsonl_examples(path: str, dataset: str, split: str, input_fields: Sequence[str],
                        label_field: str | None, id_field: str | None = None,
                        separator: str = "\n") -> list[Example]:
    """Examples of one JSONL file; a missing/empty field raises DataError with file and line."""
    examples = []
    rows = sources.read_jsonl(path)
    for index, (line, obj) in enumerate(rows):
        parts = []
        for name in input_fields:
            value = obj.get(name)
            if not isinstance(value, str) or not value.strip():
                raise sources.DataError(path, line, name, "missing or empty input field")
            parts.append(value)
        gold = None
        if label_field:
            gold = obj.get(label_field)
            if isinstance(gold, (int, float)) and not isinstance(gold, bool):
                gold = str(gold)
            if not isinstance(gold, str) or not gold.strip():
                raise sources.DataError(path, line, label_field, "missing or empty target")
        example_id = str(obj[id_field]) if id_field and id_field in obj else f"{split}-{index}"
        if id_field and id_field not in obj:
            raise sources.DataError(path, line, id_field, "missing id")
        examples.append(Example(id=example_id, dataset=dataset, split=split, text=separator.join(parts),
                                input={k: obj[k] for k in input_fields}, gold=gold))
    return sources.require_unique_ids(examples, path, [line for line, _ in rows])


@gin.configurable(module="tasks.custom")
def register_jsonl_dataset(name: str, train_path: str, validation_path: str | None = None,
                           test_path: str | None = None, input_fields: Sequence[str] = ("input",),
                           label_field: str | None = "label", id_field: str | None = None,
                           teacher_file: str | None = None, metric: str = "accuracy",
                           separator: str = "\n") -> list[str]:
    """Registers the tasks and mixtures of a JSONL dataset; returns their names.

    `teacher_file` is a TeacherRecord store (ids as above) for the *_llm tasks; `metric` is one
    of accuracy | equation | gsm8k.
    """
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} not in {sorted(METRICS)}")
    read = functools.partial(read_jsonl_examples, dataset=name, input_fields=tuple(input_fields),
                             label_field=label_field, id_field=id_field, separator=separator)
    files = {"train": train_path, "validation": validation_path, "test": test_path}

    @functools.lru_cache(maxsize=None)
    def file_examples(split: str) -> tuple[Example, ...]:
        if not files[split]:
            raise sources.DataError(f"<{name}>", None, f"{split}_path", f"no {split} file given")
        return tuple(read(os.fspath(files[split]), split=split))

    def load(data_dir: str, split: str) -> list[Example]:
        del data_dir  # paths are absolute or relative to the working directory
        if split != "test" and not validation_path:
            keep_validation = split == "validation"
            return [e for e in file_examples("train") if sources.in_validation_carve_out(e.id) == keep_validation]
        return list(file_examples(split))

    def teacher(data_dir: str, split: str, examples: list[Example]) -> list[parsing.TeacherOutput]:
        del data_dir
        if not teacher_file:
            raise sources.DataError(f"<{name}>", None, "teacher_file", "no teacher file given for the *_llm tasks")
        file_split = "train" if (split != "test" and not validation_path) else split
        return store_reading.teacher_from_store(teacher_file, examples, list(file_examples(file_split)),
                                          require_all=config.teacher_coverage() == "all",
                                          reading=config.teacher_reading())

    return register_dataset(DatasetSpec(name=name, load=load, teacher=teacher, metric=metric))
