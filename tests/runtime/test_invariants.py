"""DESIGN.md §5 invariants over every family, sdpa and eager, float32."""
import pytest
import torch

import tokenprune as tp
from tokenprune import PruneConfig, Stage

from ..conftest import GEN, SUPPRESS, batch, tiny
from ..reference import capture_lm_inputs, reference_row_logits

ATTN = ["sdpa", "eager"]


def schedules(num_layers: int):
    last = num_layers - 1
    return {
        "pre_llm": [Stage("pre_llm", keep=0.5, scorer="random")],
        "k1": [Stage(1, keep=0.5)],
        "k2": [Stage(2, keep=0.25, query="text")],
        "klast": [Stage(last, keep=3, scorer="uniform")],
        "pre+k2": [Stage("pre_llm", keep=0.75, scorer="uniform"), Stage(2, keep=0.25)],
        "k1+k3": [Stage(1, keep=0.5), Stage(3, keep=2, scorer="random")],
    }


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("where", ["pre_llm", "k2"])
def test_keep_all_is_bit_identical(family, attn, where):
    model = tiny(family, attn)
    inputs = batch(family, model)
    dense = model(**inputs).logits
    g_dense = model.generate(**inputs, max_new_tokens=8, do_sample=False, **GEN)
    at = "pre_llm" if where == "pre_llm" else 2
    with tp.pruned(model, PruneConfig([Stage(at, keep=1.0)])) as h:
        out = model(**inputs).logits
        g = model.generate(**inputs, max_new_tokens=8, do_sample=False, **GEN)
        assert h.stats.stages[0].kept == h.stats.stages[0].visual_in
    assert torch.equal(out, dense)
    assert torch.equal(g, g_dense)


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("name", ["pre_llm", "k1", "k2", "klast", "pre+k2", "k1+k3"])
def test_reference_equivalence(family, attn, name):
    model = tiny(family, attn)
    inputs = batch(family, model)
    lm_kwargs = capture_lm_inputs(model, inputs)
    cfg = PruneConfig(schedules(model.config.get_text_config().num_hidden_layers)[name])
    with tp.pruned(model, cfg) as h:
        out = model(**inputs).logits
        st = h._runtime.last_state
        stats = h.stats
    assert len(st.segments) == len(cfg.stages)
    assert stats.stages[-1].kept[0] < stats.stages[0].visual_in[0]
    final = st.segments[-1]
    for row in range(out.shape[0]):
        steps = [(s.start_layer, s.dense_idx[row][s.valid[row]]) for s in st.segments]
        ref = reference_row_logits(model, lm_kwargs, row, steps)
        got = out[row][final.valid[row]]
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_kept_positions_preserve_order_and_text(family):
    model = tiny(family)
    inputs = batch(family, model)
    with tp.pruned(model, "fastv", keep=0.25, layer=1) as h:
        model(**inputs)
        st = h._runtime.last_state
    ids = inputs["input_ids"]
    seg = st.segments[0]
    for row in range(ids.shape[0]):
        kept = seg.dense_idx[row][seg.valid[row]]
        assert torch.all(kept[1:] > kept[:-1])  # original order
        text = (inputs["attention_mask"][row] == 1) & (ids[row] < 150)
        assert set(text.nonzero().squeeze(1).tolist()) <= set(kept.tolist())  # every text token kept


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("padding", ["left", "right"])
@pytest.mark.parametrize("cfg", ["pre", "k2", "two"])
def test_generate_cache_equals_recompute(family, attn, padding, cfg):
    model = tiny(family, attn)
    inputs = batch(family, model, padding=padding)
    config = {"pre": PruneConfig([Stage("pre_llm", keep=0.5, scorer="uniform")]),
              "k2": PruneConfig([Stage(2, keep=0.25)]),
              "two": PruneConfig([Stage("pre_llm", keep=0.5, scorer="random"), Stage(2, keep=3)])}[cfg]
    with tp.pruned(model, config) as h:
        cached = model.generate(**inputs, max_new_tokens=16, do_sample=False, **GEN)
        kept, visual_in = h.stats.stages[-1].kept, h.stats.stages[0].visual_in
        recomputed = model.generate(**inputs, max_new_tokens=16, do_sample=False, use_cache=False, **GEN)
    assert kept[0] < visual_in[0] and kept[2] == 0
    assert cached.shape == (3, inputs["input_ids"].shape[1] + 16)
    assert torch.equal(cached, recomputed)


@pytest.mark.parametrize("attn", ATTN)
def test_generate_beams_and_sampling(family, attn):
    model = tiny(family, attn)
    inputs = batch(family, model)
    with tp.pruned(model, "fastv", keep=0.5, layer=1):
        beams = model.generate(**inputs, max_new_tokens=8, num_beams=2, do_sample=False, **GEN)
        beams_nc = model.generate(**inputs, max_new_tokens=8, num_beams=2, do_sample=False, use_cache=False, **GEN)
        torch.manual_seed(7)
        s1 = model.generate(**inputs, max_new_tokens=8, do_sample=True, top_k=5, **GEN)
        torch.manual_seed(7)
        s2 = model.generate(**inputs, max_new_tokens=8, do_sample=True, top_k=5, use_cache=False, **GEN)
    assert torch.equal(beams, beams_nc)
    assert torch.equal(s1, s2)


def test_manual_decode_loop_matches_generate(family):
    """A hand-written cached decode loop that passes no position_ids gets the unpruned model's positions."""
    model = tiny(family)
    full = batch(family, model)
    inputs = {k: (v[:1] if k in ("input_ids", "attention_mask", "mm_token_type_ids") else v) for k, v in full.items()}
    keep = inputs["attention_mask"][0].bool()
    inputs["input_ids"], inputs["attention_mask"] = inputs["input_ids"][:, keep], inputs["attention_mask"][:, keep]
    if "mm_token_type_ids" in inputs:
        inputs["mm_token_type_ids"] = inputs["mm_token_type_ids"][:, keep]
    for k in ("pixel_values", "image_sizes", "image_grid_thw"):  # row 0 holds the first image only
        if k in inputs and not family.startswith("qwen"):
            inputs[k] = inputs[k][:1]
    if family.startswith("qwen"):
        n = int(inputs["image_grid_thw"][0].prod())
        inputs["pixel_values"], inputs["image_grid_thw"] = inputs["pixel_values"][:n], inputs["image_grid_thw"][:1]
    pick = lambda logits: logits[:, -1:].index_fill(-1, torch.tensor(SUPPRESS), float("-inf")).argmax(-1)  # noqa: E731
    with tp.pruned(model, PruneConfig([Stage("pre_llm", keep=0.5, scorer="uniform"), Stage(2, keep=2)])):
        gen = model.generate(**inputs, max_new_tokens=4, do_sample=False, **GEN)
        out = model(**inputs, use_cache=True)
        cache, mask = out.past_key_values, inputs["attention_mask"]
        toks = [pick(out.logits)]
        for _ in range(3):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = model(input_ids=toks[-1], attention_mask=mask, past_key_values=cache)
            toks.append(pick(out.logits))
    assert torch.equal(torch.cat(toks, 1), gen[:, -4:])
