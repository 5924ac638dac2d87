"""Public API: config validation, presets, apply/remove, stats, errors."""
import pytest
import torch

import tokenprune as tp
from tokenprune import ConfigError, InputError, PruneConfig, Stage, UnsupportedModelError

from .conftest import GEN, batch, tiny


def _hook_counts(model):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def _instance_attrs(model):
    return {id(m): set(vars(m)) for m in model.modules()} | {"top": set(vars(model))}


def test_remove_restores_exactly(family):
    model = tiny(family)
    inputs = batch(family, model)
    before = model(**inputs).logits
    hooks, attrs, cfg = _hook_counts(model), _instance_attrs(model), model.config.to_dict()
    fwd = model.forward
    h = tp.apply(model, "fastv", keep=0.25, layer=1)
    assert _hook_counts(model) > hooks and "generate" in vars(model)
    pruned = model(**inputs).logits
    model.generate(**inputs, max_new_tokens=4, **GEN)
    assert pruned.shape[1] < before.shape[1]
    h.remove()
    h.remove()  # idempotent
    assert _hook_counts(model) == hooks
    assert _instance_attrs(model) == attrs
    assert model.config.to_dict() == cfg and model.forward == fwd
    assert torch.equal(model(**inputs).logits, before)


def test_no_state_between_calls():
    model = tiny("llava")
    inputs = batch("llava", model)
    with tp.pruned(model, "random", keep=0.5) as h:
        a = model.generate(**inputs, max_new_tokens=6, **GEN)
        model(**batch("llava", model, seed=3))  # a different call in between
        b = model.generate(**inputs, max_new_tokens=6, **GEN)
        assert h._runtime.local.session is None
    assert torch.equal(a, b)


def test_apply_twice_raises_and_context_manager_cleans_up():
    model = tiny("llava")
    base = _hook_counts(model)
    with tp.pruned(model, "fastv"):
        with pytest.raises(tp.AlreadyAttachedError, match="already has a tokenprune handle"):
            tp.apply(model, "random")
    h = tp.apply(model, "random")  # allowed again after removal
    h.remove()
    with pytest.raises(RuntimeError):
        with tp.pruned(model, "uniform"):
            raise RuntimeError("boom")
    assert _hook_counts(model) == base


@pytest.mark.parametrize("kwargs, field", [
    (dict(keep=0), "keep"), (dict(keep=-3), "keep"), (dict(keep=1.5), "keep"), (dict(keep=0.0), "keep"),
    (dict(keep=True), "keep"), (dict(at="layer3"), "at"), (dict(at=-1), "at"), (dict(scorer="nope"), "scorer"),
    (dict(selector="nope"), "selector"), (dict(reducer="nope"), "reducer"), (dict(query="first"), "query"),
    (dict(bogus=1), "bogus"),
])
def test_bad_stage_raises_config_error(kwargs, field):
    with pytest.raises(ConfigError, match=f"Stage.{field}"):
        Stage(**kwargs)


def test_bad_schedules_and_presets():
    with pytest.raises(ConfigError, match="strictly increasing"):
        PruneConfig([Stage(3), Stage(2)])
    with pytest.raises(ConfigError, match="must not grow"):
        PruneConfig([Stage(1, keep=0.25), Stage(2, keep=0.5)])
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        PruneConfig.from_preset("nope")
    with pytest.raises(ConfigError, match="only accepted with a preset"):
        tp.apply(tiny("llava"), PruneConfig([Stage(2)]), keep=3)


def test_layer_out_of_range_leaves_model_untouched(family):
    model = tiny(family)
    n = model.config.get_text_config().num_hidden_layers
    base = _hook_counts(model)
    with pytest.raises(ConfigError, match=rf"layer {n} does not exist; allowed: 'pre_llm' or 0..{n - 1}"):
        tp.apply(model, "fastv", layer=n)
    assert _hook_counts(model) == base and "generate" not in vars(model)


def test_unsupported_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    m = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, vocab_size=64))
    base = _hook_counts(m)
    with pytest.raises(UnsupportedModelError, match="model_type 'llama' is not supported"):
        tp.apply(m, "fastv")
    assert _hook_counts(m) == base


def test_keep_above_visual_tokens_is_input_error(family):
    model = tiny(family)
    inputs = batch(family, model)
    before = model(**inputs).logits
    with tp.pruned(model, PruneConfig([Stage(1, keep=100000)])):
        with pytest.raises(InputError, match=r"Stage.keep: .* allowed: 1\.\."):
            model(**inputs)
    assert torch.equal(model(**inputs).logits, before)


def test_placeholder_mismatch_is_input_error(family):
    model = tiny(family)
    inputs = batch(family, model)
    ids = inputs["input_ids"].clone()
    first = (ids == 150).nonzero()[0]
    ids[first[0], first[1]] = 7
    with tp.pruned(model, "fastv"):
        with pytest.raises(InputError, match="input_ids"):
            model(**dict(inputs, input_ids=ids))


def test_stats_counts_and_flops(family):
    model = tiny(family)
    inputs = batch(family, model)
    n_vis = [(inputs["input_ids"][r] == 150).sum().item() for r in range(3)]
    with tp.pruned(model, PruneConfig([Stage("pre_llm", keep=0.5, scorer="uniform"), Stage(2, keep=2)])) as h:
        assert h.stats is None
        model.generate(**inputs, max_new_tokens=3, **GEN)
        st = h.stats
    assert [s.at for s in st.stages] == ["pre_llm", 2]
    assert st.stages[0].visual_in == n_vis
    # row 0: one image, row 1: two images (budgets are per image), row 2: text only
    assert st.stages[1].kept == [2, 4, 0]
    assert st.stages[1].visual_in == st.stages[0].kept
    assert all(len(ix) == 2 for ix in st.stages[1].kept_indices[0])
    assert st.prompt_tokens == inputs["attention_mask"].sum(1).tolist()
    assert st.flops_pruned[2] == st.flops_dense[2] and st.flops_pruned[0] < st.flops_dense[0]
    assert 0 < st.flops_ratio < 1
    assert "pre_llm" in str(st) and st.to_dict()["flops_ratio"] == st.flops_ratio


def test_config_round_trip(tmp_path):
    cfg = PruneConfig([Stage("pre_llm", keep=0.5, scorer="random"), Stage(2, keep=16, query="text")], seed=3)
    assert PruneConfig.from_dict(cfg.to_dict()) == cfg
    p = tmp_path / "c.json"
    p.write_text(cfg.to_json())
    assert PruneConfig.from_file(str(p)) == cfg
    y = tmp_path / "c.yaml"
    import yaml

    y.write_text(yaml.safe_dump(cfg.to_dict()))
    assert PruneConfig.from_file(str(y)) == cfg
    fv = PruneConfig.from_preset("fastv", keep=64, layer=3)
    assert fv.stages[0].at == 3 and fv.stages[0].keep == 64 and fv.stages[0].scorer == "attention"
    assert set(tp.preset_names()) >= {"fastv", "random", "uniform"}


def test_random_is_seeded():
    model = tiny("llava")
    inputs = batch("llava", model)
    picks = []
    for seed in (0, 0, 1):
        with tp.pruned(model, "random", keep=0.25, seed=seed) as h:
            model(**inputs)
            picks.append(h.stats.stages[0].kept_indices)
    assert picks[0] == picks[1] != picks[2]


def test_static_cache_is_rejected_clearly():
    model = tiny("llava")
    inputs = batch("llava", model)
    with tp.pruned(model, "fastv", keep=0.5, layer=1):
        with pytest.raises(InputError, match="DynamicCache"):
            model.generate(**inputs, max_new_tokens=2, cache_implementation="static", **GEN)
