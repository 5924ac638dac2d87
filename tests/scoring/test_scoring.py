"""Scorers, selectors and compaction helpers on known answers."""
import pytest
import torch

import tokenprune as tp
from tokenprune import PruneConfig, Stage
from tokenprune.registry import SCORERS
from tokenprune.scoring.attention import QUERY_OPTION
from tokenprune.runtime.compact import compaction_index, gather_tokens, inverse_index, is_left_padded
from tokenprune.scoring.view import TokenView
from tokenprune.selection import topk

from ..conftest import batch, tiny

CAPTURED = {}


@SCORERS.register("_capture_attention", options=[QUERY_OPTION], captures={"lm_attention"})
def _capture(view: TokenView, *, query: str = "last") -> torch.Tensor:
    s = view.attention(query)
    CAPTURED["scores"], CAPTURED["view"] = s, view
    return s


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "qwen3_vl"])
@pytest.mark.parametrize("layer", [1, 3])
@pytest.mark.parametrize("use_cache", [True, False])
def test_attention_scorer_equals_eager_attention_weights(family, layer, use_cache):
    """A stage at layer K scores with layer K-1's attention (FastV), reproduced without eager attention: keys come
    from layer K-1's KV cache (use_cache=True) or are recomputed (use_cache=False)."""
    model = tiny(family, "eager")
    inputs = batch(family, model)
    dense = model(**inputs, output_attentions=True)
    att = dense.attentions[layer - 1].mean(1)  # [B, n, n]
    with tp.pruned(model, PruneConfig([Stage(layer, keep=0.5, scorer="_capture_attention")])):
        model(**inputs, use_cache=use_cache)
    view, scores = CAPTURED["view"], CAPTURED["scores"]
    last = att[:, -1, :]  # left padding: the last position is every row's last token
    expect = torch.gather(last, 1, view.visual_index) * view.visual_mask
    torch.testing.assert_close(scores * view.visual_mask, expect, atol=1e-5, rtol=1e-4)


@SCORERS.register("_capture_visual_keys", options=[QUERY_OPTION], captures={"lm_attention"})
def _capture_vk(view: TokenView, *, query: str = "last") -> torch.Tensor:
    s = view.attention(query, keys="visual")
    CAPTURED["scores"], CAPTURED["view"] = s, view
    return s


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_visual_keys_softmax_equals_renormalised_eager_attention(family, use_cache):
    """``keys="visual"`` (AngelSlim's FastV variant): per head, the last token's eager attention restricted to the
    row's visual keys and renormalised over them (a softmax over a subset of keys), then the mean over heads."""
    model = tiny(family, "eager")
    inputs = batch(family, model)
    att = model(**inputs, output_attentions=True).attentions[0][:, :, -1, :]  # [B, H, n] layer 0, last token
    with tp.pruned(model, PruneConfig([Stage(1, keep=0.5, scorer="_capture_visual_keys")])):
        model(**inputs, use_cache=use_cache)
    view, scores = CAPTURED["view"], CAPTURED["scores"]
    for r in range(att.shape[0]):
        idx = view.visual_index[r][view.visual_mask[r]]
        per_head = att[r][:, idx]
        expect = (per_head / per_head.sum(-1, keepdim=True)).mean(0)
        torch.testing.assert_close(scores[r][view.visual_mask[r]], expect, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(scores * view.visual_mask, torch.gather(att.mean(1), 1, view.visual_index)
                              * view.visual_mask)  # not FastV's softmax over every key


def test_uniform_scores_give_even_stride():
    v, k = 16, 4
    view = TokenView(hidden=torch.zeros(1, v, 2), visual_index=torch.arange(v)[None], visual_mask=torch.ones(1, v, dtype=torch.bool),
                     item_id=torch.zeros(1, v, dtype=torch.long), local_index=torch.arange(v)[None],
                     item_len=torch.full((1, v), v), budget=torch.full((1, v), k), valid=torch.ones(1, v, dtype=torch.bool),
                     layer=None, generator=torch.Generator())
    s = SCORERS.get("uniform")(view)
    assert topk(s[0], None, k).tolist() == [0, 5, 10, 15]


def test_topk_returns_sorted_unique():
    s = torch.tensor([0.1, 0.9, 0.5, 0.9, 0.2])
    assert topk(s, None, 3).tolist() == [1, 2, 3]


def test_compaction_left_and_right():
    keep = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    idx, valid = compaction_index(keep, left=True)
    assert valid.tolist() == [[True, True, True], [False, True, True]]
    assert idx[0].tolist() == [1, 2, 4] and idx[1, 1:].tolist() == [0, 1]
    idx_r, valid_r = compaction_index(keep, left=False)
    assert valid_r.tolist() == [[True, True, True], [True, True, False]]
    assert idx_r[0].tolist() == [1, 2, 4] and idx_r[1, :2].tolist() == [0, 1]
    inv = inverse_index(idx, valid, 5)
    assert inv.tolist() == [[-1, 0, 1, -1, 2], [1, 2, -1, -1, -1]]
    x = torch.arange(10.).view(2, 5)
    assert gather_tokens(x[None].expand(3, -1, -1), idx, -1)[2, 0].tolist() == [1.0, 2.0, 4.0]
    assert is_left_padded(torch.tensor([[0, 1], [1, 1]], dtype=torch.bool))
    assert not is_left_padded(torch.tensor([[1, 0], [1, 1]], dtype=torch.bool))


def test_fastv_prefers_attended_tokens():
    """With queries from the text, the kept set differs from a random one and is stable across calls."""
    model = tiny("llava")
    inputs = batch("llava", model)
    with tp.pruned(model, "fastv", keep=4, layer=2) as h:
        model(**inputs)
        a = h.stats.stages[0].kept_indices
        model(**inputs)
        assert h.stats.stages[0].kept_indices == a
    assert all(len(img) == 4 for row in a for img in row)


def test_cls_attention_equals_clip_eager_attention():
    """The [CLS] row of the CLIP layer feeding the projector, recomputed from q/k, equals eager attention weights."""
    model = tiny("llava", "eager")
    inputs = batch("llava", model)
    tower = model.model.vision_tower
    vis = tower(inputs["pixel_values"], output_attentions=True, output_hidden_states=True)
    layer = model.config.vision_feature_layer % len(vis.hidden_states) - 1
    expect = vis.attentions[layer].mean(1)[:, 0, 1:]  # [images, patches]
    with tp.pruned(model, "visionzip", keep=4) as h:
        model(**inputs)
        st = h._runtime.last_state
    got = [im.vision for row in st.images for im in row]
    assert len(got) == expect.shape[0] == 3
    # images appear in batch order (row 0, then row 1's two images), as in pixel_values
    torch.testing.assert_close(torch.stack(got), expect, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("preset", ["visionzip", "vflowopt"])
def test_vision_scores_read_captured_projections(preset, monkeypatch):
    """Under a handle, the feature layer's q/k projections are captured by hooks during the tower's forward (not
    recomputed), and the scores equal the recomputation from the tower's hidden states exactly."""
    from tokenprune.adapters.base import get_adapter
    from tokenprune.adapters.llava import LlavaAdapter

    model = tiny("llava")
    inputs = batch("llava", model)
    seen = []
    original = LlavaAdapter._feature_qk

    def spy(self, out, projections, cls_only):
        seen.append(sorted(projections or {}))
        return original(self, out, projections, cls_only)

    monkeypatch.setattr(LlavaAdapter, "_feature_qk", spy)
    with tp.pruned(model, preset, keep=4) as h:
        model(**inputs)
        images = [im for row in h._runtime.last_state.images for im in row]
        threshold = h._runtime.vflow_threshold
    assert seen == [["k", "q"]]
    out = model.model.get_image_features(pixel_values=inputs["pixel_values"], return_dict=True)
    adapter = get_adapter(model)
    if preset == "visionzip":
        got, expect = [im.vision for im in images], adapter.cls_attention(out)
    else:
        got, expect = [im.flow["global"] for im in images], adapter.vision_global(out, None, None, threshold)
    assert seen[-1] == [] and len(got) == len(expect) == 3
    assert all(torch.equal(a, b) for a, b in zip(got, expect))


def test_visionzip_keeps_highest_cls_attention():
    model = tiny("llava")
    inputs = batch("llava", model)
    with tp.pruned(model, "visionzip", keep=4, contextual=0) as h:  # dominant tokens only
        model(**inputs)
        st, stats = h._runtime.last_state, h.stats
    for row, kept_row in zip(st.images, stats.stages[0].kept_indices):
        for im, kept in zip(row, kept_row):
            assert sorted(kept) == sorted(torch.topk(im.vision, 4).indices.tolist())


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_received_attention_matches_eager_weights(family, monkeypatch):
    """Qwen towers have no [CLS]: attention received in the last block, per 2x2 merge unit, in raster order."""
    import sys

    model = tiny(family, "eager")
    inputs = batch(family, model)
    blk = model.model.visual.blocks[-1]
    mod = sys.modules[type(blk.attn).__module__]
    calls = []
    original = mod.eager_attention_forward

    def recording(module, *args, **kwargs):
        out, w = original(module, *args, **kwargs)
        if module is blk.attn:
            calls.append(w[0].mean(0).mean(0))  # [keys] received, mean over heads and queries
        return out, w

    monkeypatch.setattr(mod, "eager_attention_forward", recording)
    with tp.pruned(model, PruneConfig([Stage("pre_llm", keep=2, scorer="cls_attention")])) as h:
        model(**inputs)
        st = h._runtime.last_state
    received = torch.cat(calls)
    per_unit = received.view(-1, 4).mean(1)
    grid = inputs["image_grid_thw"]
    if family == "qwen2_5_vl":
        from transformers.vision_utils import get_vision_window_index

        v = model.model.visual
        idx, _ = get_vision_window_index(grid, spatial_merge_size=2, window_size=v.window_size, patch_size=14)
        per_unit = per_unit[torch.argsort(idx)]
    got = torch.cat([im.vision for row in st.images for im in row])
    assert got.numel() == int(grid.prod(-1).sum()) // 4
    torch.testing.assert_close(got, per_unit, atol=1e-6, rtol=1e-4)


def test_take_rows_equals_gather():
    from tokenprune.runtime.compact import take_rows

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 4, generator=g)
    idx = torch.randint(0, 7, (3, 5), generator=g)
    expect = torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, 4))
    assert torch.equal(take_rows(x, idx), expect)
    assert torch.equal(take_rows(x[:1], idx), torch.gather(x[:1].expand(3, -1, -1), 1,
                                                           idx.unsqueeze(-1).expand(-1, -1, 4)))
    with pytest.raises(ValueError):
        take_rows(x[:2], idx)
