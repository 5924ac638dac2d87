"""VFlowOpt: the ``vflow`` scorer against an independent re-implementation on the vision tower's eager attention maps
(``output_attentions``) and a numpy entropy map; known answers; the preset's schedule and recycling."""
import numpy as np
import pytest
import torch

import tokenprune as tp
from tokenprune import PruneConfig, Stage
from tokenprune.scoring.vflow import global_query_attention, patch_entropy
from tokenprune.testing.tiny import Item, make_inputs, make_model


def reference_vflow(model, pixel_values: torch.Tensor, threshold: float, alpha: float, k: int) -> list[list[int]]:
    feature_layer = model.config.vision_feature_layer
    with torch.no_grad():
        out = model.model.vision_tower(pixel_values, output_attentions=True, output_hidden_states=True)
    att = out.attentions[feature_layer % len(out.hidden_states) - 1].double().mean(1)  # [n, T, T]
    ps = model.config.vision_config.patch_size
    kept = []
    for i in range(att.shape[0]):
        a = att[i]
        rcv = a.mean(0).numpy()
        g = rcv > threshold * rcv.mean()
        s = a[torch.from_numpy(g)].mean(0).numpy() if g.any() else rcv
        s = s[1:]  # the [CLS] column
        grey = pixel_values[i].double().mean(0).numpy()
        grey = (grey - grey.min()) / (grey.max() - grey.min())
        side = grey.shape[0] // ps
        ent = []
        for r in range(side):
            for c in range(side):
                levels = np.round(grey[r * ps:(r + 1) * ps, c * ps:(c + 1) * ps] * 255).astype(int).ravel()
                p = np.bincount(levels, minlength=256) / levels.size
                ent.append(-(p[p > 0] * np.log2(p[p > 0])).sum())
        ent = np.exp(ent) / np.exp(ent).sum()
        kept.append(sorted(np.argsort(-(s + alpha * ent), kind="stable")[:k].tolist()))
    return kept


@pytest.mark.parametrize("threshold, alpha", [(1.0, 0.0), (1.2, 0.5), (1e9, 0.0)])
def test_vflow_equals_an_independent_reimplementation(threshold, alpha):
    model, eager = make_model("llava"), make_model("llava", attn="eager")
    inputs = make_inputs("llava", model, [[Item((56, 56))], [Item((56, 56)), Item((56, 56))]], seed=2)
    ref = reference_vflow(eager, inputs["pixel_values"], threshold, alpha, 5)
    cfg = PruneConfig([Stage("pre_llm", keep=5, scorer="vflow", threshold=threshold, alpha=alpha)])
    with tp.pruned(model, cfg) as h:
        model(**inputs)
        kept = h.stats.stages[0].kept_indices
    assert [i for row in kept for i in row] == ref


def test_known_answers():
    probs = torch.tensor([[0.1, 0.8, 0.1], [0.2, 0.6, 0.2], [0.6, 0.2, 0.2]])
    # received: [0.3, 0.533, 0.167]; with threshold 1.2 only token 1 is a global query: its row
    torch.testing.assert_close(global_query_attention(probs, 1.2), probs[1])
    # no token passes: every query counts
    torch.testing.assert_close(global_query_attention(probs, 10.0), probs.mean(0))
    grey = torch.stack([torch.full((256,), 0.5), torch.tensor([0.0, 1.0] * 128), torch.arange(256.0) / 255])
    torch.testing.assert_close(patch_entropy(grey), torch.tensor([0.0, 1.0, 8.0]))


def test_qwen_keeps_the_budget_and_preset_recycles():
    model = make_model("qwen2_vl")
    inputs = make_inputs("qwen2_vl", model, [[Item((112, 140))], [Item((112, 112)), Item((112, 112))]])
    with tp.pruned(model, PruneConfig([Stage("pre_llm", keep=3, scorer="vflow", alpha=0.3)])) as h:
        model(**inputs)
        assert [len(i) for row in h.stats.stages[0].kept_indices for i in row] == [3, 3, 3]
    stages = PruneConfig.from_preset("vflowopt", keep=64).stages
    assert [(s.at, s.keep, s.reducer) for s in stages] == [("pre_llm", 68, "recycle"), (10, 67, "drop"),
                                                           (21, 59, "drop")]
    with pytest.raises(tp.ConfigError, match="threshold"):
        tp.apply(make_model("llava"), PruneConfig([Stage("pre_llm", keep=0.5, scorer="vflow", threshold=2.0),
                                                    Stage(2, keep=0.25, scorer="vflow", threshold=3.0)]))
