"""What every reader builds on: the data error, the one NLI example builder and the id rules.

Kept apart from `sources` so that `tfds_source` (TFDS rows) and `sources` (files) share them
without importing each other.
"""
from __future__ import annotations

import dataclasses
import hashlib

from t5x_sbs.names import NLI_LABELS
from t5x_sbs.records import Example, InputError

# The separator the paper puts between premise and hypothesis (`tokenizer.eos_token.join`).
# Our SeqIO tasks turn it into the EOS id, as the Hugging Face tokenizer does.
NLI_SEPARATOR = "</s>"


class DataError(InputError):
    """Bad input data; the message names the file, the line and the field."""


def nli_example(premise: str, hypothesis: str, label: int, uid: str | None, split: str, dataset: str,
                where: tuple[str, int | None] = ("<memory>", None)) -> Example:
    """The one NLI example builder (paper JSON and TFDS alike). Without a `uid` (e-SNLI) the id
    is a hash of the text pair, so it is the same whichever source or row order it came from."""
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(NLI_LABELS):
        raise DataError(where[0], where[1], "label", f"unknown label id {label!r}; expected 0, 1 or 2")
    if not uid:
        uid = f"{split}-" + hashlib.sha256(f"{premise}\x00{hypothesis}".encode("utf-8")).hexdigest()[:16]
    return Example(id=str(uid), dataset=dataset, split=split, text=f"{premise}{NLI_SEPARATOR}{hypothesis}",
                   input={"premise": premise, "hypothesis": hypothesis}, gold=NLI_LABELS[label])


def require_unique_ids(examples: list[Example], path: str, lines: list[int] | None = None) -> list[Example]:
    """`examples` unchanged, or DataError naming both places of a repeated id (line numbers when
    given, else row indices): two examples with one id would share one teacher answer."""
    first: dict[str, int] = {}
    for i, e in enumerate(examples):
        where = lines[i] if lines else i
        if e.id in first:
            kind = "line" if lines else "row"
            raise DataError(path, lines[i] if lines else None, "id",
                            f"duplicate id {e.id!r} ({kind} {where}; first at {kind} {first[e.id]})")
        first[e.id] = where
    return examples


def unique_ids(examples: list[Example]) -> list[Example]:
    """Repeated ids (an identical e-SNLI pair twice in a split) get `-2`, `-3`, ... in row order."""
    seen: dict[str, int] = {}
    result = []
    for e in examples:
        seen[e.id] = seen.get(e.id, 0) + 1
        result.append(e if seen[e.id] == 1 else dataclasses.replace(e, id=f"{e.id}-{seen[e.id]}"))
    return result
