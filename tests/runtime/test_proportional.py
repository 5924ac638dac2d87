"""Proportional attention (ToMe) with the ``merge`` reducer: an independent reference that physically merges the
pruned tokens into their most similar kept token (plain group mean) and adds ``log(group size)`` to those keys'
attention logits in every later layer; plus the generate()/cache invariants."""
import pytest
import torch
from transformers.masking_utils import create_causal_mask

import tokenprune as tp
from tokenprune import PruneConfig, Stage
from tokenprune.adapters import get_adapter
from tokenprune.errors import UnsupportedModelError
from tokenprune.testing.tiny import make_model

from ..conftest import GEN, batch, tiny
from ..reference import capture_lm_inputs


def merged_reference(model, lm_kwargs: dict, row: int, at: int, items: list[tuple[torch.Tensor, torch.Tensor]]):
    """Logits of ``row`` when, entering layer ``at``, each item (``dense positions``, ``kept local indices``) keeps
    its kept tokens, each pruned token is averaged into its most similar kept token (cosine) and every merged key
    gets ``log(size)`` added to its attention logits from then on."""
    ad = get_adapter(model)
    lm = ad.lm
    emb = lm_kwargs["inputs_embeds"][row]
    mask = lm_kwargs.get("attention_mask")
    valid = mask[row].bool() if mask is not None else torch.ones(emb.shape[0], dtype=torch.bool)
    pos = lm_kwargs.get("position_ids")
    if pos is None:
        pos = ad.default_position_ids(1, emb.shape[0], 0, emb.device)
    pos = pos[..., row:row + 1, :] if pos.dim() == 3 else pos[row:row + 1] if pos.shape[0] > 1 else pos
    cur = valid.nonzero().squeeze(1)
    h = emb[cur][None].clone()
    bias = torch.zeros(cur.numel())
    for i, layer in enumerate(ad.layers):
        if i == at:
            survive = torch.ones(cur.numel(), dtype=torch.bool)
            for dense_pos, kept_local in items:
                idx = torch.searchsorted(cur, dense_pos)
                is_kept = torch.zeros(idx.numel(), dtype=torch.bool)
                is_kept[kept_local] = True
                kept, pruned = idx[is_kept], idx[~is_kept]
                f = torch.nn.functional.normalize(h[0, idx], dim=-1)
                target = (f[~is_kept] @ f[is_kept].T).argmax(1)
                size = torch.ones(kept.numel()).index_add(0, target, torch.ones(pruned.numel()))
                h[0, kept] = (h[0, kept].index_add(0, target, h[0, pruned])) / size[:, None]
                bias[kept] = size.log()
                survive[pruned] = False
            cur, h, bias = cur[survive], h[:, survive], bias[survive]
        p = pos[..., cur]
        cos_sin = lm.rotary_emb(h, ad.rope_positions(p))
        text_pos = p if p.dim() == 2 else (p[0] if p.shape[0] == 4 else None)
        allowed = create_causal_mask(config=ad.text_config, inputs_embeds=h, attention_mask=None,
                                     past_key_values=None, position_ids=None)
        n = h.shape[1]
        if allowed is None:
            allowed = torch.ones(n, n, dtype=torch.bool).tril()[None, None]
        if allowed.dtype == torch.bool:
            allowed = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
        h = layer(h, attention_mask=allowed + bias[None, None, None, :], position_embeddings=cos_sin,
                  position_ids=text_pos)
    return model.lm_head(lm.norm(h))[0]


NO_DEEPSTACK = ["llava", "llava_next", "llava_onevision", "qwen2_vl", "qwen2_5_vl"]


@pytest.mark.parametrize("family", NO_DEEPSTACK)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("at", ["pre_llm", 2])
def test_proportional_merge_matches_reference(family, attn, at):
    model = tiny(family, attn)
    inputs = batch(family, model)
    lm_kwargs = capture_lm_inputs(model, inputs)
    cfg = PruneConfig([Stage(at, keep=0.5, scorer="random", selector="topk", reducer="merge", proportional=True)])
    with tp.pruned(model, cfg) as h:
        out = model(**inputs).logits
        st = h._runtime.last_state
        kept = h.stats.stages[0].kept_indices
    seg = st.segments[0]
    assert seg.key_bias is not None and bool((seg.key_bias > 0).any())  # some tokens were merged
    ids = inputs["input_ids"]
    placeholder = torch.tensor(list(get_adapter(model).visual_token_ids().values()))
    for row in range(ids.shape[0]):
        visual = torch.isin(ids[row], placeholder).nonzero().squeeze(1)  # every item's tokens, in sequence order
        items, off = [], 0
        for j, im in enumerate(st.images[row]):
            items.append((visual[off:off + im.orig_len], torch.tensor(kept[row][j])))
            off += im.orig_len
        ref = merged_reference(model, lm_kwargs, row, 0 if at == "pre_llm" else at, items)
        got = out[row][seg.valid[row]]
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding", ["left", "right"])
@pytest.mark.parametrize("at", ["pre_llm", 2])
def test_proportional_generate_cache_equals_recompute(family, padding, at):
    model = tiny(family)
    inputs = batch(family, model, padding=padding)
    cfg = PruneConfig([Stage(at, keep=0.5, scorer="uniform", reducer="merge", proportional=True)])
    with tp.pruned(model, cfg) as h:
        cached = model.generate(**inputs, max_new_tokens=12, do_sample=False, **GEN)
        assert h.stats.stages[0].kept[0] < h.stats.stages[0].visual_in[0]
        recomputed = model.generate(**inputs, max_new_tokens=12, do_sample=False, use_cache=False, **GEN)
    assert torch.equal(cached, recomputed)


def test_proportional_changes_outputs_and_plain_merge_does_not_bias(family):
    model = tiny(family)
    inputs = batch(family, model)
    outs = {}
    for prop in (False, True):
        cfg = PruneConfig([Stage("pre_llm", keep=0.5, scorer="uniform", reducer="merge", proportional=prop)])
        with tp.pruned(model, cfg) as h:
            outs[prop] = model(**inputs).logits
            assert (h._runtime.last_state.segments[0].key_bias is not None) == prop
    assert not torch.allclose(outs[False], outs[True])


def test_proportional_refuses_flash_attention():
    model = make_model("llava")  # a fresh model: the cached tiny() ones are shared by other tests
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(UnsupportedModelError, match="proportional"):
        tp.apply(model, PruneConfig([Stage("pre_llm", keep=0.5, reducer="merge", proportional=True)]))
