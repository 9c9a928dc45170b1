"""Conversion proven on a model trained by OUR trainer (`python -m t5x_sbs.main`) on SVAMP.

One trainer run, started from a random-weight transformers T5 saved in tmp (INITIAL_CHECKPOINT_PATH
= an HF dir), trains a few steps and keeps every checkpoint plus best/. Then:
  * step 1 holds exactly the HF weights (the first update has learning rate 0 under warmup), so
    the run started from that directory;
  * `t5x-sbs convert --to hf` of the trained model loads in transformers: logits within 1e-4,
    greedy `generate` text == our greedy decode, and the exported tokenizer encodes the eval
    inputs to the ids our SeqIO task fed the trainer;
  * `--from MODEL_DIR/best` exports the best checkpoint's weights exactly.
"""
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from t5x_sbs import checkpoints
from t5x_sbs.checkpoints import initial_params, model_files
from t5x_sbs import cli as t5x_cli
from t5x_sbs.convert.hf_import import load_hf_t5

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = [pytest.mark.parity, pytest.mark.shared_data]

REPO = pathlib.Path(__file__).resolve().parents[1]
LENGTHS = {"inputs": 64, "targets": 32}
TRAIN_STEPS = 4
VOCAB_SIZE = 256
# Must equal gin/models/t5_1_1/tiny.gin (with T5Config.vocab_size bound to VOCAB_SIZE).
HF_TINY = dict(vocab_size=VOCAB_SIZE, d_model=64, d_kv=16, d_ff=128, num_heads=4, num_layers=2,
               num_decoder_layers=2, relative_attention_num_buckets=32, relative_attention_max_distance=128,
               feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
               decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def save_random_hf_model(directory: pathlib.Path) -> None:
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**HF_TINY, tie_word_embeddings=False))
    with torch.no_grad():  # v1.1 files carry their own lm_head (transformers 5 ties by default)
        model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight) * 0.5)
    model.save_pretrained(directory)


def train(model_dir: pathlib.Path, spm: pathlib.Path, data_dir: pathlib.Path, initial: pathlib.Path) -> None:
    bindings = {
        "MODEL_DIR": json.dumps(str(model_dir)), "MIXTURE_OR_TASK_NAME": '"svamp_sbs_llm"',
        "TASK_FEATURE_LENGTHS": json.dumps(LENGTHS), "TRAIN_STEPS": TRAIN_STEPS, "BATCH_SIZE": 4,
        "RATIONALE_WEIGHT": 1.0, "LOSS_MODE": '"mixture"', "SPM_PATH": json.dumps(str(spm)),
        "DATA_DIR": json.dumps(str(data_dir)), "DATA_FRACTION": 1.0, "SEED": 0, "EVAL_EVERY": 2,
        "LEARNING_RATE": 0.01, "INITIAL_CHECKPOINT_PATH": json.dumps(str(initial)),
        "T5Config.vocab_size": VOCAB_SIZE, "T5Config.dropout_rate": 0.0,
        "OptimizerConfig.warmup_steps": 2,  # linear warmup from 0: the first update leaves the weights
        "RunConfig.checkpoint_every": 1, "RunConfig.keep_checkpoints": None, "RunConfig.log_every": 1,
        "RunConfig.eval_batches": 1,
    }
    cmd = [sys.executable, "-m", "t5x_sbs.main", "--run_mode=train",
           "--gin_file=gin/models/t5_1_1/tiny.gin", "--gin_file=gin/runs/demo.gin",
           *[f"--gin.{k}={v}" for k, v in bindings.items()]]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory):
    from t5x_sbs.data.vocab import dataset_texts, train_sentencepiece

    root = tmp_path_factory.mktemp("trained")
    spm = pathlib.Path(train_sentencepiece(dataset_texts("svamp", str(shared_data)), str(root / "sp.model"),
                                           VOCAB_SIZE))
    save_random_hf_model(root / "hf_init")
    train(root / "model", spm, shared_data, root / "hf_init")
    return {"root": root, "model_dir": root / "model", "spm": spm, "hf_init": root / "hf_init",
            "data_dir": shared_data}


def restore_params(path):
    config = model_files.load_model_config(path)
    from t5x_sbs.models.info import param_shapes

    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), param_shapes(config))
    return config, jax.tree.map(np.asarray, initial_params.load_initial_params(path, abstract))


def assert_trees_equal(a, b):
    leaves_a = jax.tree_util.tree_flatten_with_path(a)[0]
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(leaves_a, jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_run_started_from_the_hf_dir_weights(run):
    log = [json.loads(line) for line in (run["model_dir"] / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in log if r["step"] == 1 and "learning_rate" in r)
    assert first["learning_rate"] == 0.0  # precondition: step 1 = the initial weights, unchanged
    _, hf_params = load_hf_t5(run["hf_init"])
    _, step1 = restore_params(run["model_dir"] / "1")
    assert_trees_equal(step1, hf_params)
    _, last = restore_params(run["model_dir"] / str(TRAIN_STEPS))
    assert not np.array_equal(last["encoder"]["layers_0"]["mlp"]["wo"]["kernel"],
                              hf_params["encoder"]["layers_0"]["mlp"]["wo"]["kernel"])  # it trained


def convert(*argv) -> None:
    assert t5x_cli.main(["convert", *map(str, argv)]) == 0


def eval_rows(run, count=6):
    """The SVAMP validation label rows as the trainer's SeqIO task made them (text and ids)."""
    import gin

    from t5x_sbs.trainer import input_pipeline
    from t5x_sbs.tasks import catalog
    catalog.register_all()
    import seqio

    gin.clear_config()
    gin.bind_parameter("tasks.config.vocabulary_path.path", str(run["spm"]))
    gin.bind_parameter("tasks.config.data_dir.path", str(run["data_dir"]))
    try:
        task = seqio.get_mixture_or_task("svamp_label_llm")
        rows = list(task.get_dataset(None, split="validation", shuffle=False).take(count).as_numpy_iterator())
        batch = input_pipeline.eval_batches("svamp_label_llm", "validation", LENGTHS, count, max_batches=1)[0]
    finally:
        gin.clear_config()
    return rows, batch


def test_trained_export_matches_transformers(run, tmp_path):
    hf_dir = tmp_path / "hf"
    convert("--from", run["model_dir"], "--to", "hf", "--out", hf_dir, "--vocab", run["spm"])
    config, params = restore_params(run["model_dir"])  # latest step: the trained weights
    rows, batch = eval_rows(run)
    texts = [row["inputs_pretokenized"].decode() for row in rows]
    assert all(t.startswith("predict: ") for t in texts)
    ids = [[int(t) for t in row["inputs"]] for row in rows]
    for tokenizer_cls in (transformers.T5TokenizerFast, transformers.T5Tokenizer):
        tokenizer = tokenizer_cls.from_pretrained(hf_dir)
        assert [tokenizer(t)["input_ids"] for t in texts] == ids, tokenizer_cls.__name__
    enc = batch["encoder_input_tokens"]
    for row, full in zip(enc, ids):  # the trainer's eval batch: those ids, trimmed (EOS kept)
        expected = full if len(full) <= LENGTHS["inputs"] else full[: LENGTHS["inputs"] - 1] + [1]
        assert [int(t) for t in row if t] == expected

    model = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir).eval()
    ours = our_logits(config, params, enc, batch["decoder_input_tokens"])
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor(enc, dtype=torch.long), attention_mask=torch.tensor(enc > 0),
                       decoder_input_ids=torch.tensor(batch["decoder_input_tokens"], dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=0)

    (ours_ids, ours_text), (theirs_ids, theirs_text) = greedy(config, params, model, enc, tokenizer, run["spm"])
    assert ours_ids == theirs_ids
    assert ours_text == theirs_text


def our_logits(config, params, enc, dec):
    from t5x_sbs.models.t5 import Transformer

    model = Transformer(config.replace(dropout_rate=0.0))
    return np.asarray(model.apply({"params": params}, enc, dec, enable_dropout=False))


def greedy(config, params, hf_model, enc, tokenizer, spm, length=LENGTHS["targets"]):
    """(ids, text) per row from our greedy decode and from transformers' generate(do_sample=False)."""
    import seqio

    from t5x_sbs.models.decoding import generate
    from t5x_sbs.models.t5 import Transformer

    vocab = seqio.SentencePieceVocabulary(str(spm))
    decoded, _ = generate(Transformer(config.replace(dropout_rate=0.0)), params, enc, max_decode_length=length)
    ours = [until_eos(row) for row in np.asarray(decoded)]
    with torch.no_grad():
        out = hf_model.generate(input_ids=torch.tensor(enc, dtype=torch.long), attention_mask=torch.tensor(enc > 0),
                                do_sample=False, num_beams=1, max_new_tokens=length).numpy()
    theirs = [until_eos(row[1:]) for row in out]  # row[0]: the start id
    known = lambda ids: [t for t in ids if t != vocab.unk_id]  # noqa: E731  HF skips <unk> as special; seqio prints ⁇
    return ((ours, [vocab.decode(known(ids)) for ids in ours]),
            (theirs, [tokenizer.decode(known(ids), skip_special_tokens=True) for ids in theirs]))


def until_eos(row):
    ids = [int(t) for t in row]
    return [t for t in (ids[: ids.index(1)] if 1 in ids else ids) if t != 0]


def test_best_checkpoint_export(run, tmp_path):
    best = run["model_dir"] / checkpoints.BEST_DIR
    steps = checkpoints.complete_steps(best)
    assert len(steps) == 1
    convert("--from", best, "--to", "hf", "--out", tmp_path / "hf", "--vocab", run["spm"], "--dtype", "float32")
    _, exported = load_hf_t5(tmp_path / "hf")
    _, kept = restore_params(best / str(steps[0]))
    assert_trees_equal(exported, kept)
