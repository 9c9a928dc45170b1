"""HF import streamed onto a sharded model: same values as the host import, placed on the
partitioner's shardings (unrolled and scanned), one tensor at a time, mismatches named."""
import json

import jax
import numpy as np
import pytest

from t5x_sbs.convert.hf_import import load_hf_params, load_hf_t5
from t5x_sbs.models.info import logical_axes, param_shapes
from t5x_sbs.trainer.partitioning import MeshConfig, Partitioner, make_mesh

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.distributed  # 8 fake CPU devices, (data 2, fsdp 4) mesh

HF_FIELDS = dict(vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_heads=4, num_layers=4, num_decoder_layers=3,
                 relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj="gated-gelu",
                 dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def save_hf(directory, fields, max_shard_size):
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**fields, tie_word_embeddings=False))
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight))
    model.save_pretrained(directory, max_shard_size=max_shard_size)  # size-sharded files, read on one host
    assert (directory / "model.safetensors.index.json").exists()
    return directory


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return save_hf(tmp_path_factory.mktemp("hf"), HF_FIELDS, "100KB")


def sharded_abstract(config):
    part = Partitioner(make_mesh(MeshConfig(data=2, fsdp=4, model=1)))
    shardings = part.logical_to_sharding(logical_axes(config))
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), param_shapes(config), shardings)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_streamed_import_matches_and_is_sharded(hf_dir, scan_layers):
    config, host = load_hf_t5(hf_dir, scan_layers=scan_layers)
    abstract = sharded_abstract(config)
    placed = load_hf_params(hf_dir, abstract, model_config=config)
    assert jax.tree.structure(placed) == jax.tree.structure(host)
    flat = jax.tree_util.tree_flatten_with_path(placed)[0]
    for (path, x), want, a in zip(flat, jax.tree.leaves(host), jax.tree.leaves(abstract)):
        assert x.sharding == a.sharding, jax.tree_util.keystr(path)
        np.testing.assert_array_equal(np.asarray(x), want, err_msg=jax.tree_util.keystr(path))
    embedding = placed["token_embedder"]["embedding"]
    assert len({s.device for s in embedding.addressable_shards}) == 8
    assert any(s.data.shape != embedding.shape for s in embedding.addressable_shards)  # really split


def test_streamed_import_names_the_mismatch(hf_dir, tmp_path):
    config, _ = load_hf_t5(hf_dir)
    with pytest.raises(ValueError, match="relative_attention_max_distance"):
        load_hf_params(hf_dir, sharded_abstract(config), model_config=config.replace(relative_attention_max_distance=128))
    wider = config.replace(d_ff=64)
    with pytest.raises(ValueError, match=r"encoder/layers_0/mlp/wi_0/kernel has shape \(32, 48\)"):
        load_hf_params(hf_dir, sharded_abstract(wider))
    fewer = config.replace(num_decoder_layers=2)
    with pytest.raises(ValueError, match="decoder/layers_2/.* has no place in the model"):
        load_hf_params(hf_dir, sharded_abstract(fewer))
    # a shard listed in the index but gone
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in hf_dir.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    gone = sorted(set(index["weight_map"].values()))[-1]
    (broken / gone).unlink()
    with pytest.raises(FileNotFoundError, match=gone):
        load_hf_params(broken, sharded_abstract(config))
