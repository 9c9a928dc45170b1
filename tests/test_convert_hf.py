"""HF export/import proven in transformers (torch, CPU): logits, greedy decode, tokenizer, round trip."""
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from t5x_sbs.checkpoints import initial_params, model_files
from t5x_sbs.cli import convert as convert_cli
from t5x_sbs.convert.hf_export import export_hf
from t5x_sbs.convert.t5x_import import save_as_ours
from t5x_sbs.models.config import T5Config
from t5x_sbs.models.decoding import generate
from t5x_sbs.models.t5 import Transformer, init_params, stack_layers

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

EVAL_INPUTS = ["predict: Tom has 3 apples and buys 2 more.", "explain: a dog is an animal that barks."]
CORPUS = EVAL_INPUTS + [
    "predict: how many apples does Tom have now?", "the quick brown fox jumps over the lazy dog.",
    "explain: subtract the number of eaten cakes from the total.", "Mary had 12 cakes and ate 5.",
] * 20


def tiny_config(**overrides) -> T5Config:
    fields = dict(vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_heads=4, num_encoder_layers=2,
                  num_decoder_layers=2, relative_attention_num_buckets=8, dropout_rate=0.0)
    fields.update(overrides)
    return T5Config(**fields)


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> pathlib.Path:
    import sentencepiece as spm

    directory = tmp_path_factory.mktemp("spm")
    (directory / "corpus.txt").write_text("\n".join(CORPUS))
    spm.SentencePieceTrainer.train(
        input=str(directory / "corpus.txt"), model_prefix=str(directory / "sp"), vocab_size=60,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, model_type="unigram", minloglevel=2)
    return directory / "sp.model"


def encode_batch(spm_path, texts, length=48):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_path))
    rows = [sp.encode(t) + [1] for t in texts]  # + EOS, as our tasks do
    return np.array([r + [0] * (length - len(r)) for r in rows], np.int32), rows


def random_params(config, seed=0):
    # Larger-than-init weights so logits and greedy choices are far from ties.
    params = init_params(config, jax.random.PRNGKey(seed))
    return jax.tree.map(lambda x: np.asarray(x, np.float32), params)


def our_logits(config, params, enc, dec):
    model = Transformer(config)
    return np.asarray(model.apply({"params": params}, jnp.asarray(enc), jnp.asarray(dec), enable_dropout=False))


def hf_logits(model, enc, dec):
    with torch.no_grad():
        return model(input_ids=torch.tensor(enc, dtype=torch.long), attention_mask=torch.tensor(enc > 0),
                     decoder_input_ids=torch.tensor(dec, dtype=torch.long)).logits.float().numpy()


def decoder_inputs(enc):
    rng = np.random.default_rng(0)
    dec = rng.integers(3, 90, size=(enc.shape[0], 7)).astype(np.int32)
    dec[:, 0] = 0
    return dec


@pytest.mark.parity
@pytest.mark.parametrize("variant", ["v1_1", "v1_0"])
def test_export_matches_transformers(tmp_path, spm_model, variant):
    config = tiny_config() if variant == "v1_1" else tiny_config(feed_forward_proj="relu", tie_word_embeddings=True)
    params = random_params(config)
    scanned = config.replace(scan_layers=True)  # the trainer may save the scanned layout: export unrolls it
    save_as_ours(tmp_path / "run", scanned, stack_layers(params), vocab=spm_model, step=3)
    argv = ["--from", str(tmp_path / "run"), "--to", "hf", "--out", str(tmp_path / "hf"), "--max-shard-size", "40KB"]
    parser = __import__("argparse").ArgumentParser()
    convert_cli.add_arguments(parser)
    assert convert_cli.run(parser.parse_args(argv)) == 0
    hf_dir = tmp_path / "hf"
    hf_config = json.loads((hf_dir / "config.json").read_text())
    assert hf_config["decoder_start_token_id"] == 0
    assert hf_config["tie_word_embeddings"] is (variant == "v1_0")
    assert hf_config["feed_forward_proj"] == ("gated-gelu" if variant == "v1_1" else "relu")
    index = json.loads((hf_dir / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # size-sharded

    model = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir).eval()
    enc, rows = encode_batch(spm_model, EVAL_INPUTS)
    dec = decoder_inputs(enc)
    np.testing.assert_allclose(hf_logits(model, enc, dec), our_logits(config, params, enc, dec), atol=1e-4, rtol=0)

    ours, _ = generate(Transformer(config), params, enc, max_decode_length=10)
    with torch.no_grad():
        theirs = model.generate(input_ids=torch.tensor(enc, dtype=torch.long), attention_mask=torch.tensor(enc > 0),
                                do_sample=False, num_beams=1, max_new_tokens=10).numpy()[:, 1:]  # drop start id
    cut = lambda row: [int(t) for t in row][: list(row).index(1) + 1] if 1 in list(row) else [int(t) for t in row]  # noqa: E731
    assert [cut(row) for row in theirs] == [cut(row) for row in np.asarray(ours)]

    for tokenizer_cls in (transformers.T5TokenizerFast, transformers.T5Tokenizer):
        tokenizer = tokenizer_cls.from_pretrained(hf_dir)
        assert [tokenizer(t)["input_ids"] for t in EVAL_INPUTS] == rows, tokenizer_cls.__name__


@pytest.mark.parity
def test_bfloat16_export(tmp_path):
    config = tiny_config()
    params = random_params(config, seed=1)
    save_as_ours(tmp_path / "run", config, params)
    export_hf(tmp_path / "run", tmp_path / "hf", dtype="bfloat16")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "hf" / "model.safetensors"), framework="pt") as f:
        assert f.get_tensor("shared.weight").dtype == torch.bfloat16
    model = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    enc = np.array([[5, 6, 7, 8, 1, 0], [9, 10, 11, 1, 0, 0]], np.int32)
    dec = decoder_inputs(enc)
    rounded = jax.tree.map(lambda x: np.asarray(x.astype(ml_dtypes.bfloat16), np.float32), params)
    np.testing.assert_allclose(hf_logits(model, enc, dec), our_logits(config, rounded, enc, dec), atol=1e-4, rtol=0)
    full = our_logits(config, params, enc, dec)
    assert np.abs(hf_logits(model, enc, dec) - full).max() < 0.05 * np.abs(full).max()


def _hf_tensors(directory):
    from safetensors.torch import load_file

    tensors = {}
    for file in sorted(pathlib.Path(directory).glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    return tensors


@pytest.mark.parity
@pytest.mark.parametrize("variant", ["v1_1", "v1_0"])
def test_hf_ours_hf_round_trip_is_bit_identical(tmp_path, variant):
    kwargs = dict(vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_heads=4, num_layers=2, num_decoder_layers=2,
                  relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    if variant == "v1_1":
        kwargs.update(feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    else:
        kwargs.update(feed_forward_proj="relu", tie_word_embeddings=True)
    torch.manual_seed(0)
    original = transformers.T5ForConditionalGeneration(transformers.T5Config(**kwargs))
    if variant == "v1_1":  # transformers 5 ties by default; v1.1 files carry their own lm_head
        original.lm_head.weight = torch.nn.Parameter(torch.randn_like(original.shared.weight) * 0.2)
    original.save_pretrained(tmp_path / "hf0")
    for cmd in (["--from", f"hf:{tmp_path / 'hf0'}", "--to", "ours", "--out", str(tmp_path / "ours")],
                ["--from", str(tmp_path / "ours"), "--to", "hf", "--out", str(tmp_path / "hf1")],
                ["--from", f"hf:{tmp_path / 'hf1'}", "--to", "ours", "--out", str(tmp_path / "ours2")],
                ["--from", str(tmp_path / "ours2"), "--to", "hf", "--out", str(tmp_path / "hf2")]):
        assert convert_cli.convert(*_args(cmd), no_tokenizer=True)  # transformers' dir has no spiece.model
    before, after = _hf_tensors(tmp_path / "hf0"), _hf_tensors(tmp_path / "hf1")
    aliases = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"}
    assert set(after) - aliases <= set(before) and set(before) - aliases - set(after) == set()
    for name, tensor in after.items():
        reference = before.get(name, before["shared.weight"] if name in aliases else None)
        assert tensor.dtype == reference.dtype and torch.equal(tensor, reference), name
    assert (tmp_path / "hf1" / "config.json").read_text() == (tmp_path / "hf2" / "config.json").read_text()
    exported = json.loads((tmp_path / "hf1" / "config.json").read_text())
    for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_heads", "num_layers", "num_decoder_layers",
                "feed_forward_proj", "relative_attention_num_buckets", "decoder_start_token_id"):
        assert exported[key] == getattr(original.config, key), key
    assert _hf_tensors(tmp_path / "hf1").keys() == _hf_tensors(tmp_path / "hf2").keys()
    # the imported checkpoint is an INITIAL_CHECKPOINT_PATH: params only, onto given shardings
    config = model_files.load_model_config(tmp_path / "ours")
    from t5x_sbs.models.info import param_shapes

    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), param_shapes(config))
    from_ours = initial_params.load_initial_params(tmp_path / "ours", abstract)
    from_hf = initial_params.load_initial_params(tmp_path / "hf0", abstract)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), from_ours, from_hf)


def _args(cmd):
    pairs = dict(zip(cmd[::2], cmd[1::2]))
    return pairs["--from"], pairs["--to"], pairs["--out"]


def test_bad_inputs_name_the_tensor_or_field(tmp_path, capsys):
    config = tiny_config()
    params = random_params(config)
    del params["decoder"]["layers_1"]["mlp"]["wi_0"]
    save_as_ours(tmp_path / "missing", config, params)
    with pytest.raises(KeyError, match="decoder/layers_1/mlp/wi_0/kernel"):
        export_hf(tmp_path / "missing", tmp_path / "out")
    # a v1.0 checkpoint whose config says v1.1: the extra logits_dense is named
    relu = tiny_config(feed_forward_proj="relu")
    save_as_ours(tmp_path / "mismatch", relu, random_params(relu))
    (tmp_path / "mismatch" / "config.json").write_text(
        (tmp_path / "mismatch" / "config.json").read_text().replace('"relu"', '"gated-gelu"'))
    with pytest.raises(KeyError, match="wi_0"):
        export_hf(tmp_path / "mismatch", tmp_path / "out")
    # unknown config values / fields
    cfg_file = tmp_path / "mismatch" / "config.json"
    cfg_file.write_text(cfg_file.read_text().replace('"gated-gelu"', '"swiglu"'))
    with pytest.raises(ValueError, match="feed_forward_proj"):
        model_files.load_model_config(tmp_path / "mismatch")
    cfg_file.write_text(json.dumps(dict(json.loads(cfg_file.read_text()), feed_forward_proj="relu", n_experts=4)))
    with pytest.raises(ValueError, match="n_experts"):
        model_files.load_model_config(tmp_path / "mismatch")
    save_as_ours(tmp_path / "ok", config, random_params(config))  # complete, but no spiece.model
    # the CLI reports instead of crashing
    parser = __import__("argparse").ArgumentParser()
    convert_cli.add_arguments(parser)
    code = convert_cli.run(parser.parse_args(["--from", str(tmp_path / "missing"), "--to", "hf", "--out", str(tmp_path / "o")]))
    assert code == 2 and "wi_0" in capsys.readouterr().err
    code = convert_cli.run(parser.parse_args(["--from", f"t5x:{tmp_path}", "--to", "ours", "--out", str(tmp_path / "o")]))
    assert code == 2 and "not a T5X checkpoint" in capsys.readouterr().err
    # an export without a tokenizer is refused unless asked for: the error says what to pass
    code = convert_cli.run(parser.parse_args(["--from", str(tmp_path / "ok"), "--to", "hf", "--out", str(tmp_path / "o")]))
    assert code == 2 and "--vocab SPM_PATH" in capsys.readouterr().err and not (tmp_path / "o" / "config.json").exists()


def test_bpe_vocabulary_is_refused_before_writing(tmp_path, capsys):
    """transformers' T5 tokenizers read a SentencePiece model as unigram: a BPE model would
    tokenize differently from training, so the export refuses it (or skips the tokenizer)."""
    from t5x_sbs.data.vocab import train_sentencepiece

    texts = [f"{name} has {n} apples. {name} gives away {k} apples." for name in ("Ann", "Bob", "Dev")
             for n in range(9) for k in range(4)]
    bpe = train_sentencepiece(texts, str(tmp_path / "bpe.model"), vocab_size=60, model_type="bpe")
    config = tiny_config()
    save_as_ours(tmp_path / "run", config, random_params(config))
    with pytest.raises(ValueError, match=r"bpe.model: trainer_spec.model_type BPE.*--no-tokenizer"):
        export_hf(tmp_path / "run", tmp_path / "hf", vocab=bpe)
    assert not (tmp_path / "hf" / "config.json").exists() and not list((tmp_path / "hf").glob("*.safetensors"))
    parser = __import__("argparse").ArgumentParser()
    convert_cli.add_arguments(parser)
    argv = ["--from", str(tmp_path / "run"), "--to", "hf", "--out", str(tmp_path / "hf2"), "--vocab", bpe]
    assert convert_cli.run(parser.parse_args(argv)) == 2 and "model_type BPE" in capsys.readouterr().err
    # --no-tokenizer: weights and configs only, whatever vocabulary is around
    assert convert_cli.run(parser.parse_args(argv + ["--no-tokenizer"])) == 0
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "hf2").iterdir()}
    assert not (tmp_path / "hf2" / "spiece.model").exists()
