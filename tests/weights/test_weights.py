"""Weight-level structured pruning: exact parameter counts, identity at ratio 0, stock/custom reload, GQA, KV bytes,
token pruning on a weight-pruned model, bad input."""
import json

import pytest
import torch
from transformers import AutoModelForImageTextToText, DynamicCache

import tokenprune as tp
from tokenprune import PruneConfig, Stage
from tokenprune.errors import ConfigError, InputError, UnsupportedModelError
from tokenprune.testing.tiny import Item, make_inputs, make_model
from tokenprune.weights import WeightSpec, backbone, export, load_pruned, prune
from tokenprune.weights.pipeline import run_pipeline

from ..conftest import GEN, batch
from ..reference import capture_lm_inputs, reference_row_logits

pytestmark = pytest.mark.filterwarnings("ignore:FLAP bias compensation is off")

FAMS = ["llava", "qwen2_vl", "qwen2_5_vl", "llava_onevision", "qwen3_vl"]
HEADS_OK = {"llava", "llava_onevision", "qwen3_vl"}


def calib(family, model, n=3):
    it = Item((56, 56)) if family == "llava" else Item((112, 112))
    return [make_inputs(family, model, [[it]], seed=s) for s in range(n)]


def spec_for(family, **kw):
    if family in HEADS_OK:
        kw.setdefault("kv_groups", 1)
    return WeightSpec(**kw)


@pytest.mark.parametrize("family", FAMS)
def test_ratio_zero_is_bit_identical(family):
    model = make_model(family)
    inputs = batch(family, model)
    dense = model(**inputs).logits
    g = model.generate(**inputs, max_new_tokens=6, do_sample=False, **GEN)
    prune(model, WeightSpec(method="flap"), calib(family, model))
    assert torch.equal(model(**inputs).logits, dense)
    assert torch.equal(model.generate(**inputs, max_new_tokens=6, do_sample=False, **GEN), g)


def test_parameter_count_matches_hand_count():
    model = make_model("llava")  # d=64, 4 heads x 16, 2 KV heads, MLP 128, 4 layers
    non_layer = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in model.model.language_model.layers.parameters())
    plan, _ = prune(model, WeightSpec(mlp=0.25, kv_groups=1, blocks=1), calib("llava", model))
    d = 64
    per_layer = 2 * d + 3 * d * 96 + (d * 32 + 2 * d * 16 + 32 * d)  # norms, MLP 96 wide, 2 query heads + 1 KV head
    assert sum(p.numel() for p in model.parameters()) == non_layer + 3 * per_layer
    tc = model.config.text_config
    assert (tc.intermediate_size, tc.num_attention_heads, tc.num_key_value_heads, tc.num_hidden_layers,
            tc.head_dim) == (96, 2, 1, 3, 16)
    assert [lp.index for lp in plan.layers] == [i for i in range(4) if i not in plan.removed_blocks]


@pytest.mark.parametrize("family", FAMS)
@pytest.mark.parametrize("method", ["wanda-sp", "flap", "taylor"])
def test_stock_export_reloads_with_auto_class(family, method, tmp_path):
    model = make_model(family)
    plan, _ = prune(model, spec_for(family, mlp=0.3, blocks=1, method=method), calib(family, model))
    inputs = batch(family, model)
    report = export(model, plan, tmp_path / "out")
    again = AutoModelForImageTextToText.from_pretrained(tmp_path / "out", local_files_only=True).eval()
    assert type(again) is type(model)
    torch.testing.assert_close(again(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)
    assert report["params"] == sum(p.numel() for p in again.parameters())
    saved = json.loads((tmp_path / "out" / "tokenprune_weights.json").read_text())
    assert saved["widths"] == [len(lp.mlp_keep) for lp in plan.layers] and saved["removed_blocks"] == plan.removed_blocks
    assert len(saved["scores"]["mlp"]) == plan.dense_layers


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_custom_export_reloads_through_load_pruned(family, tmp_path):
    model = make_model(family)
    spec = WeightSpec(mlp=0.4, blocks=1, attn_layers=1, export="custom", multiple=8)
    plan, _ = prune(model, spec, calib(family, model))
    assert sum(not lp.attention for lp in plan.layers) == 1
    inputs = batch(family, model)
    export(model, plan, tmp_path / "out", verify_inputs=inputs)
    again = load_pruned(tmp_path / "out")
    torch.testing.assert_close(again(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)
    g1 = model.generate(**inputs, max_new_tokens=6, do_sample=False, **GEN)
    assert torch.equal(again.generate(**inputs, max_new_tokens=6, do_sample=False, **GEN), g1)
    assert torch.equal(model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False, **GEN), g1)
    with pytest.raises(Exception):  # stock loading refuses a custom export instead of loading it wrongly
        AutoModelForImageTextToText.from_pretrained(tmp_path / "out", local_files_only=True)


def _kv_bytes(model, inputs) -> int:
    cache = DynamicCache(config=model.config.get_text_config())
    model(**inputs, past_key_values=cache, use_cache=True)
    return sum(l.keys.numel() * l.keys.element_size() + l.values.numel() * l.values.element_size()
               for l in cache.layers)


@pytest.mark.parametrize("family", sorted(HEADS_OK))
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_gqa_after_removing_kv_groups(family, attn):
    model = make_model(family, attn=attn)
    inputs = batch(family, model)
    dense_kv = _kv_bytes(model, inputs)
    prune(model, WeightSpec(kv_groups=1, q_heads=1), calib(family, model))  # 2 KV groups x 2 heads -> 1 x 1
    attn_mod = model.model.language_model.layers[0].self_attn
    assert attn_mod.num_key_value_groups == 1 and attn_mod.k_proj.out_features == attn_mod.head_dim
    assert _kv_bytes(model, inputs) * 2 == dense_kv
    cached = model.generate(**inputs, max_new_tokens=8, do_sample=False, **GEN)
    assert torch.equal(model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=False, **GEN), cached)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "qwen3_vl"])
def test_token_pruning_invariants_on_a_weight_pruned_model(family):
    model = make_model(family)
    prune(model, spec_for(family, mlp=0.25, blocks=1), calib(family, model))
    inputs = batch(family, model)
    dense = model(**inputs).logits
    with tp.pruned(model, PruneConfig([Stage(1, keep=1.0)])):
        assert torch.equal(model(**inputs).logits, dense)
    lm_kwargs = capture_lm_inputs(model, inputs)
    cfg = PruneConfig([Stage("pre_llm", keep=0.5, scorer="uniform"), Stage(1, keep=0.5)])
    with tp.pruned(model, cfg) as h:
        out = model(**inputs).logits
        st = h._runtime.last_state
        cached = model.generate(**inputs, max_new_tokens=8, do_sample=False, **GEN)
        assert torch.equal(model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=False, **GEN), cached)
    final = st.segments[-1]
    for row in range(out.shape[0]):
        steps = [(s.start_layer, s.dense_idx[row][s.valid[row]]) for s in st.segments]
        ref = reference_row_logits(model, lm_kwargs, row, steps)
        torch.testing.assert_close(out[row][final.valid[row]], ref, atol=1e-5, rtol=1e-5)


def test_flap_bias_compensation_on_llama():
    model = make_model("llava")
    batches = calib("llava", model)
    plan, stats = prune(model, WeightSpec(mlp=0.5, kv_groups=1, method="flap"), batches)
    tc = model.config.text_config
    assert tc.mlp_bias and tc.attention_bias
    layer = model.model.language_model.layers[0]
    assert layer.mlp.down_proj.bias.abs().sum() > 0 and torch.all(layer.mlp.gate_proj.bias == 0)
    fresh = make_model("llava")
    w = fresh.model.language_model.layers[0].mlp.down_proj.weight.double()
    dropped = [j for j in range(128) if j not in plan.layers[0].mlp_keep]
    expect = w[:, dropped] @ stats.mlp[0].mean[dropped]
    torch.testing.assert_close(layer.mlp.down_proj.bias.double(), expect.to(layer.mlp.down_proj.bias).double())
    with pytest.warns(UserWarning, match="bias compensation is off"):
        prune(make_model("qwen2_vl"), WeightSpec(mlp=0.5, method="flap"), calib("qwen2_vl", make_model("qwen2_vl")))


def test_pipeline_prunes_weights_then_attaches_tokens():
    model = make_model("llava")
    cfg = {"weights": {"mlp": 0.25, "kv_groups": 1}, "stages": [{"at": 2, "keep": 4, "scorer": "attention"}]}
    plan, handle = run_pipeline(model, cfg, calib("llava", model))
    inputs = batch("llava", model)
    model.generate(**inputs, max_new_tokens=4, do_sample=False, **GEN)
    assert handle.stats.stages[0].kept[0] == 4 and model.config.text_config.intermediate_size == 96
    handle.remove()


@pytest.mark.parametrize("kw, match", [
    (dict(mlp=1.0), "mlp"), (dict(mlp=-0.1), "mlp"), (dict(kv_groups=2), "kv_groups"), (dict(q_heads=2), "q_heads"),
    (dict(blocks=4), "blocks"), (dict(hidden=0.1), "hidden size is never pruned"), (dict(method="magnitude"), "method"),
    (dict(attn_layers=1), "custom"), (dict(bias_compensation=True, mlp=0.2), None),
])
def test_bad_specs(kw, match):
    family = "llava" if match is not None else "qwen2_vl"
    model = make_model(family)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ConfigError, match=match):
        prune(model, WeightSpec(**kw), calib(family, model))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_qwen2_vl_heads_and_unsupported_models():
    model = make_model("qwen2_vl")
    with pytest.raises(ConfigError, match="head_dim"):
        prune(model, WeightSpec(kv_groups=1), calib("qwen2_vl", model))
    from transformers import LlamaConfig, LlamaForCausalLM

    with pytest.raises(UnsupportedModelError):
        prune(LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                           intermediate_size=64, vocab_size=50)), WeightSpec(), [])


def test_taylor_under_token_pruning_and_padded_batches_are_refused():
    model = make_model("llava")
    with pytest.raises(InputError, match="full sequence"):
        prune(model, WeightSpec(method="taylor", mlp=0.2), calib("llava", model),
              token_config=PruneConfig([Stage("pre_llm", keep=0.5, scorer="uniform")]))
    with pytest.raises(InputError, match="unpadded"):
        prune(make_model("llava"), WeightSpec(mlp=0.2), [batch("llava", model)])


def test_export_refuses_a_non_empty_folder(tmp_path):
    model = make_model("llava")
    plan, _ = prune(model, WeightSpec(mlp=0.25), calib("llava", model))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        export(model, plan, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind


def test_backbone_view():
    bb = backbone(make_model("qwen2_5_vl"))
    assert (bb.heads, bb.kv_heads, bb.head_dim, bb.intermediate, len(bb.layers)) == (4, 2, 16, 128, 4)
    assert not bb.stock_heads and not bb.bias_config
