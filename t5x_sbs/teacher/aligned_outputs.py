"""Teacher answers aligned to their examples: the paper's stored PaLM outputs (parsed) or a teacher
store (read by the one rule in `store_reading`). What the tasks ask for a split's teacher labels
and rationales (`store_reading.teacher_from_store` reads one store)."""
from __future__ import annotations

import functools

from t5x_sbs.data.sources import HAS_VALIDATION, canonical_split, load_examples, palm_outputs_by_id
from t5x_sbs.teacher import store_reading
from t5x_sbs.teacher.parsing import TeacherOutput, parse_teacher_output


def load_palm_teacher(dataset: str, data_dir: str, split: str) -> list[TeacherOutput]:
    """Every example of `load_examples(dataset, data_dir, split)` with its parsed PaLM output."""
    by_id = palm_outputs_by_id(dataset, data_dir, split)
    parse_as = "cqa" if dataset == "cose" else dataset
    return [TeacherOutput(e, by_id[e.id], parse_teacher_output(parse_as, by_id[e.id]))
            for e in load_examples(dataset, data_dir, split)]


def teacher_outputs(dataset: str, data_dir: str, split: str, teacher_file: str | None = None,
                    *, require_all: bool = True, tfds_data_dir: str | None = None,
                    reading=None) -> list[TeacherOutput]:
    """Teacher answers for a split: from a store file when given, else the paper's PaLM outputs."""
    if teacher_file:
        split = canonical_split(split)
        file_split = split if (split != "validation" or dataset in HAS_VALIDATION) else "train"
        load = functools.partial(load_examples, dataset, data_dir, tfds_data_dir=tfds_data_dir)
        return store_reading.teacher_from_store(teacher_file, load(split), load(file_split), require_all=require_all,
                                  reading=reading)
    return load_palm_teacher(dataset, data_dir, split)
