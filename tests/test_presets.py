"""Every preset (and the merge reducer) through the core invariants on every family."""
import pytest
import torch

import tokenprune as tp
from tokenprune import PruneConfig, Stage

from .conftest import GEN, batch, tiny
from .reference import capture_lm_inputs, reference_row_logits

PRESETS = tp.preset_names()
MERGE = {
    "merge_pre": PruneConfig([Stage("pre_llm", keep=0.5, scorer="norm", selector="maxmin", reducer="merge")]),
    "merge_k2": PruneConfig([Stage(2, keep=0.25, selector="mmr", reducer="merge", lam=0.7)]),
    "recycle_pre": PruneConfig([Stage("pre_llm", keep=0.5, scorer="norm", selector="topk", reducer="recycle",
                                      recycled=2)]),
    "recycle_k2": PruneConfig([Stage(2, keep=0.25, selector="topk", reducer="recycle", recycled=1)]),
    "transform_pre": PruneConfig([Stage("pre_llm", keep=0.5, scorer="norm", selector="maxmin", reducer="transform")]),
}

NO_CLS = ("llava_next", "llava_onevision")
#: families a preset's first scorer cannot serve (UnsupportedModelError at apply)
REFUSED = {"cls_attention": NO_CLS, "holov": NO_CLS, "flowcut": NO_CLS, "vflow": NO_CLS,
           "zoo": NO_CLS + ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")}


def _with_keep(cfg: PruneConfig, keep: float) -> PruneConfig:
    return PruneConfig([Stage(s.at, keep=keep, scorer=s.scorer, selector=s.selector, reducer=s.reducer, **s.options)
                        for s in cfg.stages])


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_invariants(family, preset):
    model = tiny(family)
    inputs = batch(family, model)
    cfg = PruneConfig.from_preset(preset, num_layers=model.config.get_text_config().num_hidden_layers)
    refused = REFUSED.get(cfg.stages[0].scorer, ())
    if family in refused:
        with pytest.raises(tp.UnsupportedModelError, match="implemented for: llava"):
            tp.apply(model, preset)
        return
    if len(cfg.stages) == 1:
        cfg = PruneConfig.from_preset(preset, keep=0.5)
    elif tp.presets.PRESETS[preset].average_ratios:  # its last stages would keep one token of these tiny items
        cfg = PruneConfig.from_preset(preset, num_layers=model.config.get_text_config().num_hidden_layers,
                                      keep=[0.5, 0.25, 0.125])
    lm_kwargs = capture_lm_inputs(model, inputs)
    dense = model(**inputs).logits
    with tp.pruned(model, _with_keep(cfg, 1.0)):
        assert torch.equal(model(**inputs).logits, dense)  # keep-all identity
    with tp.pruned(model, cfg) as h:
        out = model(**inputs).logits
        segs = h._runtime.last_state.segments
        cached = model.generate(**inputs, max_new_tokens=8, do_sample=False, **GEN)
        recomputed = model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=False, **GEN)
    assert len(segs) == len(cfg.stages)
    assert torch.equal(cached, recomputed)
    merged = any(s.reducer != "drop" for s in cfg.stages)
    for row in range(0 if merged else out.shape[0]):  # merged embeddings differ from dense ones by design
        steps = [(s.start_layer, s.dense_idx[row][s.valid[row]]) for s in segs]
        ref = reference_row_logits(model, lm_kwargs, row, steps)
        torch.testing.assert_close(out[row][segs[-1].valid[row]], ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(model(**inputs).logits, dense)  # removed


@pytest.mark.parametrize("name", sorted(MERGE))
def test_merge_generate(family, name):
    model = tiny(family)
    inputs = batch(family, model, padding="right")
    cfg = MERGE[name]
    with tp.pruned(model, PruneConfig([Stage(s.at, keep=1.0, scorer=s.scorer, selector=s.selector,
                                             reducer=s.reducer, **s.options) for s in cfg.stages])):
        keep_all = model(**inputs).logits
    assert torch.equal(keep_all, model(**inputs).logits)
    with tp.pruned(model, cfg) as h:
        out = model(**inputs).logits
        cached = model.generate(**inputs, max_new_tokens=8, do_sample=False, **GEN)
        recomputed = model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=False, **GEN)
        kept = h.stats.stages[0].kept
    assert torch.equal(cached, recomputed)
    assert kept[0] < (inputs["input_ids"][0] == 150).sum() and torch.isfinite(out).all()


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "qwen2_5_vl"])
def test_vision_attention_follows_generate_expansion(family):
    """generate() regroups precomputed image features per sample for beams; the captured vision attention follows."""
    model = tiny(family)
    inputs = batch(family, model)
    cfg = PruneConfig([Stage("pre_llm", keep=3, scorer="cls_attention")])
    with tp.pruned(model, cfg) as h:
        model(**inputs)
        single = h.stats.stages[0].kept_indices
        model.generate(**inputs, max_new_tokens=2, num_beams=2, do_sample=False, **GEN)
        beams = h.stats.stages[0].kept_indices
    assert beams == [row for row in single for _ in range(2)]
