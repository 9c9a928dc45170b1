"""`t5x-sbs vocab`: train a small SentencePiece vocabulary from a dataset's texts (`data.vocab`).

`--dataset pretrain` trains on the span-corruption pretraining corpus (with `--text_files`, on
your files instead); `--extra_ids 100` reports the embedding size the sentinels need.
"""
from __future__ import annotations

import argparse

import sentencepiece as spm

from t5x_sbs.data import sources, vocab


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--dataset", required=True, help="a dataset name, or 'pretrain' (the pretraining corpus)")
    parser.add_argument("--text_files", nargs="*", help="with --dataset pretrain: your text/JSONL files instead")
    parser.add_argument("--jsonl_field", default="text", help="the text field of --text_files' .jsonl files")
    parser.add_argument("--extra_ids", type=int, default=0, help="sentinels seqio appends (T5: 100)")
    parser.add_argument("--output", required=True, help="path of the .model file to write")
    parser.add_argument("--vocab_size", type=int, default=512)
    parser.add_argument("--splits", default="train", help="comma-separated splits to read")


def run(args: argparse.Namespace) -> int:
    if args.dataset == "pretrain":
        collected = vocab.document_texts(_pretrain_documents(args))
    else:
        collected = vocab.collect_dataset_texts(args.dataset, args.data_dir, args.splits.split(","))
    for note in collected.notes:
        print(note)
    texts = collected.texts
    path = vocab.train_sentencepiece(texts, args.output, args.vocab_size)
    size = spm.SentencePieceProcessor(model_file=path).get_piece_size()
    print(f"wrote {path}: {size} pieces from {len(texts)} texts; {collected.summary()}")
    if args.extra_ids:
        padded = vocab.padded_size(size, args.extra_ids)
        print(f"with {args.extra_ids} extra ids: {size + args.extra_ids} ids; bind T5Config.vocab_size >= "
              f"{size + args.extra_ids} (e.g. {padded}, a multiple of 128 as T5's 32128)")
    return 0


def _pretrain_documents(args: argparse.Namespace) -> list[str]:
    if not args.text_files:
        return vocab.pretrain_texts(args.data_dir)
    return [text for path in args.text_files for _, text in sources.read_text_documents(path, args.jsonl_field)]
