"""AdaptInfer: the ``prior`` attention query against an independent re-implementation on eager attention maps
(``output_attentions``), per head as the released scoring code; the preset's schedule and budget semantics."""
import pytest
import torch

import tokenprune as tp
from tokenprune import PruneConfig, Stage
from tokenprune.runtime.attention import text_prior_scores
from tokenprune.testing.tiny import IMAGE, Item, make_inputs, make_model


def reference_kept(attn: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, k: int) -> list[list[list[int]]]:
    """From one layer's eager attention ``[B, H, n, n]``: the text after the last image token weights itself by
    S = A_TT + A_TTᵀ − diag(A_TT) summed over its rows; image token v scores Σ_h Σ_j w_hj A_h[j, v]; per image
    (16 consecutive placeholder tokens) the top ``k``."""
    out = []
    for b in range(ids.shape[0]):
        img = (ids[b] == IMAGE).nonzero().squeeze(1).tolist()
        text = [p for p in range(img[-1] + 1, ids.shape[1]) if mask[b, p] and ids[b, p] != IMAGE]
        a = attn[b].double()  # [H, n, n]
        tt = a[:, text][:, :, text]
        w = tt.sum(1) + tt.sum(2) - torch.diagonal(tt, dim1=1, dim2=2)  # [H, |T|]
        score = torch.einsum("hj,hjv->v", w, a[:, text])
        rows = []
        for start in range(0, len(img), 16):
            pos = torch.tensor(img[start:start + 16])
            rows.append(sorted(torch.topk(score[pos], k).indices.tolist()))
        out.append(rows)
    return out


@pytest.mark.parametrize("padding", ["left", "right"])
def test_prior_query_equals_an_independent_reimplementation(padding):
    model, eager = make_model("llava"), make_model("llava", attn="eager")
    inputs = make_inputs("llava", model, [[Item((56, 56))], [Item((56, 56)), Item((56, 56))]], padding=padding,
                         seed=5)
    with torch.no_grad():
        attn = eager(**inputs, output_attentions=True).attentions[1]  # a stage at layer 2 reads layer 1
    with tp.pruned(model, PruneConfig([Stage(2, keep=5, scorer="attention", query="prior")])) as h:
        model(**inputs)
        kept = h.stats.stages[0].kept_indices
    assert kept == reference_kept(attn, inputs["input_ids"], inputs["attention_mask"], 5)


def test_text_prior_known_answer():
    # one head, two text queries at positions 2, 3 and visual tokens at 0, 1:
    # query 2 attends [0.5, 0.3, 0.2, 0], query 3 attends [0.1, 0.1, 0.4, 0.4]
    probs = torch.tensor([[[[0.5, 0.3, 0.2, 0.0], [0.1, 0.1, 0.4, 0.4]]]])
    q_index, ok, vis = torch.tensor([[2, 3]]), torch.tensor([[True, True]]), torch.tensor([[0, 1]])
    # priors: token 2 = received (0.2 + 0.4) + paid (0.2) - self 0.2 = 0.6; token 3 = 0.4 + (0.4 + 0.4) - 0.4 = 0.8
    expect = torch.tensor([[0.6 * 0.5 + 0.8 * 0.1, 0.6 * 0.3 + 0.8 * 0.1]])
    torch.testing.assert_close(text_prior_scores(probs, q_index, ok, vis), expect)


def test_preset_schedule_and_average_budget():
    stages = PruneConfig.from_preset("adaptinfer", keep=64).stages
    assert [(s.at, s.keep) for s in stages] == [(2, 133), (11, 27), (21, 3)]
    assert [s.keep for s in PruneConfig.from_preset("adaptinfer", keep=128).stages] == [266, 54, 6]
    assert [s.at for s in PruneConfig.from_preset("adaptinfer", num_layers=4).stages] == [1, 2, 3]
    with pytest.raises(tp.ConfigError, match="keep"):
        PruneConfig.from_preset("adaptinfer", keep=-1)
