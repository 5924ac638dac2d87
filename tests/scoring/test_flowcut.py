"""FlowCut: the ``flowcut`` scorer against an independent re-implementation of FlowCut's CLIP algorithm (the [CLS] +
survivors sequence gathered physically at each layer, softmax per head over it, FlowCut's adaptive prune count),
on a deeper tower than the tiny test models; known answers of the narrowing; the Qwen variant's budget."""
import math

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

import tokenprune as tp
from tokenprune import PruneConfig, Stage
from tokenprune.scoring.flow import flowcut_ranks
from tokenprune.testing.tiny import Item, make_inputs, make_model


def reference_flowcut(tower, pixel_values: torch.Tensor, feature_layer: int, k: int) -> list[list[int]]:
    """FlowCut on the dense tower's hidden states, written after the paper's CLIP code: per image, at encoder layer
    ``idx`` (``rpl = select - idx - 1`` layers remain), the sequence is [CLS] + the surviving patches; scores
    accumulate as an even EMA; when ``rpl`` is even the survivors shrink (to ``k`` at ``rpl = 0``)."""
    with torch.no_grad():
        hs = tower(pixel_values, output_hidden_states=True).hidden_states
        layers = getattr(tower, "vision_model", tower).encoder.layers
        n_scored = feature_layer % len(hs) - 1
        kept = []
        for b in range(pixel_values.shape[0]):
            patches = list(range(1, hs[0].shape[1]))
            cum = None
            for idx in range(n_scored):
                rpl = n_scored - idx - 1
                layer = layers[idx]
                sa = layer.self_attn
                seq = layer.layer_norm1(hs[idx][b])[[0] + patches]
                split = lambda x: x.view(x.shape[0], sa.num_heads, -1).transpose(0, 1)  # noqa: E731
                q, key, val = split(sa.q_proj(seq) * sa.scale), split(sa.k_proj(seq)), split(sa.v_proj(seq))
                cls_att = torch.softmax(q @ key.transpose(1, 2), -1)[:, 0, 1:].mean(0)
                sem = torch.softmax(val[:, :1] @ val.transpose(1, 2), -1)[:, 0, 1:].mean(0)
                vnorm = val.mean(0)[1:].abs().sum(-1)
                score = (cls_att / cls_att.sum() + sem / sem.sum()) * vnorm
                cum = score if cum is None else 0.5 * cum + 0.5 * score
                if len(patches) > k and rpl % 2 == 0:
                    n = len(patches)
                    if rpl == 0:
                        n_keep = k
                    else:
                        p = cls_att / cls_att.sum()
                        ratio = float(-(p * p.log()).sum()) / math.log(n)
                        prune = round((n - k) / rpl ** 0.5 * (1 - ratio ** 2))
                        n_keep = max(n + 1 - prune, k + 1) - 1
                    top = torch.topk(cum, n_keep).indices.sort().values
                    patches = [patches[i] for i in top.tolist()]
                    cum = cum[top]
            kept.append([p - 1 for p in patches])
    return kept


def deep_llava(layers: int = 9):
    """The tiny LLaVA with a 9-layer, 4-head CLIP tower (vision_feature_layer -2: 7 layers scored)."""
    model = make_model("llava")
    v = model.config.vision_config
    cfg = CLIPVisionConfig(hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_hidden_layers=layers,
                           num_attention_heads=4, image_size=v.image_size, patch_size=v.patch_size,
                           projection_dim=v.projection_dim)
    torch.manual_seed(0)
    model.model.vision_tower = CLIPVisionModel(cfg).eval()
    model.config.vision_config.num_hidden_layers = layers
    return model


@pytest.mark.parametrize("keep", [2, 5, 9])
def test_flowcut_equals_an_independent_reimplementation(keep):
    model = deep_llava()
    inputs = make_inputs("llava", model, [[Item((56, 56))], [Item((56, 56)), Item((56, 56))]], seed=3)
    ref = reference_flowcut(model.model.vision_tower, inputs["pixel_values"], model.config.vision_feature_layer, keep)
    with tp.pruned(model, PruneConfig([Stage("pre_llm", keep=keep, scorer="flowcut")])) as h:
        model(**inputs)
        kept = h.stats.stages[0].kept_indices
    assert [i for row in kept for i in row] == ref


def test_narrowing_known_answers():
    # 3 layers, 6 tokens, k = 2: narrowing at remain = 2 (adaptive) and remain = 0 (to k)
    g = torch.Generator().manual_seed(0)
    stats = {"rel": torch.rand(3, 6, generator=g), "vnorm": torch.rand(3, 6, generator=g) + 0.5}
    ranks = flowcut_ranks(stats, 2)
    top = set(torch.topk(ranks, 2).indices.tolist())
    assert len(top) == 2 and ranks.max() < 3  # at most two narrowings: survivors score 2 + c < 3
    # uniform attention (maximal entropy): the adaptive round prunes nothing, the last round keeps the top-2 flow
    flat = {"rel": torch.ones(3, 6), "vnorm": torch.arange(1.0, 7.0).expand(3, 6)}
    assert sorted(torch.topk(flowcut_ranks(flat, 2), 2).indices.tolist()) == [4, 5]
    # non-progressive: top-k of the accumulated flow, no narrowing rounds
    assert flowcut_ranks(flat, 2, progressive=False).max() < 1
    # a budget covering every token: nothing narrows
    assert flowcut_ranks(stats, 6).max() < 1


def test_qwen_variant_keeps_the_budget_per_item():
    model = make_model("qwen2_vl")
    inputs = make_inputs("qwen2_vl", model, [[Item((112, 140))], [Item((112, 112)), Item((112, 112))]])
    with tp.pruned(model, "flowcut", keep=3) as h:
        model(**inputs)
        kept = h.stats.stages[0].kept_indices
    assert [len(i) for row in kept for i in row] == [3, 3, 3]


def test_flowcut_refused_where_the_tower_is_not_followed():
    with pytest.raises(tp.UnsupportedModelError, match="flowcut.*implemented for: llava, qwen2_vl"):
        tp.apply(make_model("llava_next"), "flowcut")
