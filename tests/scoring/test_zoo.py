"""ZOO-Prune: the ``zoo`` scorer's sensitivity and the ``sads`` selector against an independent per-token,
per-direction re-implementation (the paper's central difference; SADS recomputing the min distance each step);
known answers (a linear projector is equally sensitive everywhere, a dead ReLU unit is not sensitive)."""
import pytest
import torch

import tokenprune as tp
from tokenprune import PruneConfig, Stage
from tokenprune.scoring.zoo import projector_sensitivity
from tokenprune.selection import sads
from tokenprune.testing.tiny import Item, make_inputs, make_model


def reference_sensitivity(project, x: torch.Tensor, u: torch.Tensor, eps: float) -> torch.Tensor:
    out = []
    for i in range(x.shape[0]):
        vals = [float((project(x[i] + eps * d) - project(x[i] - eps * d)).norm()) / (2 * eps) for d in u]
        out.append(sum(vals) / len(vals))
    return torch.tensor(out)


def reference_sads(s: torch.Tensor, f: torch.Tensor, k: int) -> list[int]:
    s = (s - s.min()) / (s.max() - s.min() + 1e-8)
    d = 1 - torch.nn.functional.normalize(f, dim=-1) @ torch.nn.functional.normalize(f, dim=-1).T
    picked = [int(torch.argmax(s))]
    while len(picked) < k:
        best, arg = -1.0, -1
        for i in range(len(s)):
            if i not in picked:
                g = float(s[i] * d[i, picked].min())
                if g > best:
                    best, arg = g, i
        picked.append(arg)
    return sorted(picked)


def directions(n: int, d: int, seed: int) -> torch.Tensor:
    u = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return u / (u.norm(dim=-1, keepdim=True) + 1e-12)


def test_sensitivity_equals_the_per_token_reference():
    torch.manual_seed(0)
    proj = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.GELU(), torch.nn.Linear(12, 5))
    x = torch.randn(9, 6)
    with torch.no_grad():
        got = projector_sensitivity(proj, x, 11, 0.05, torch.Generator().manual_seed(3), chunk=4)
        ref = reference_sensitivity(proj, x, directions(11, 6, 3), 0.05)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_known_answers():
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    with torch.no_grad():
        s = projector_sensitivity(lin, x, 8, 0.1, torch.Generator().manual_seed(0))
        assert torch.allclose(s, s[0].expand(5), rtol=1e-4)  # linear: the same for every token
        relu = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
        relu[0].weight.copy_(torch.eye(2))
        relu[0].bias.zero_()
        s = projector_sensitivity(relu, torch.tensor([[-5.0, -5.0], [5.0, 5.0]]), 8, 0.1,
                                  torch.Generator().manual_seed(0))
        assert s[0] == 0 and torch.isclose(s[1], torch.tensor(1.0))  # identity on the live side: unit directions
    # SADS: the most sensitive first, then sensitivity x distance (the duplicate of the first is worth nothing)
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    assert sads(torch.tensor([0.9, 0.8, 0.5, 0.1]), f, 2).tolist() == [0, 2]


@pytest.mark.parametrize("k", [2, 6])
def test_pipeline_equals_the_reference(k):
    model = make_model("llava")
    inputs = make_inputs("llava", model, [[Item((56, 56))], [Item((56, 56)), Item((56, 56))]], seed=4)
    with torch.no_grad():
        hs = model.model.vision_tower(inputs["pixel_values"], output_hidden_states=True).hidden_states
        x = hs[model.config.vision_feature_layer][:, 1:]
        proj = model.model.multi_modal_projector
        gen = torch.Generator().manual_seed(7)
        ref = []
        for xi in x:  # one generator for the call, drawn image after image
            u = torch.randn(16, xi.shape[-1], generator=gen)
            u = u / (u.norm(dim=-1, keepdim=True) + 1e-12)
            ref.append(reference_sads(reference_sensitivity(proj, xi, u, 0.01), proj(xi), k))
    cfg = PruneConfig([Stage("pre_llm", keep=k, scorer="zoo", selector="sads", directions=16)], seed=7)
    with tp.pruned(model, cfg) as h:
        model(**inputs)
        kept = h.stats.stages[0].kept_indices
    assert [i for row in kept for i in row] == ref


def test_refused_without_a_projector_path():
    with pytest.raises(tp.UnsupportedModelError, match="zoo"):
        tp.apply(make_model("qwen2_vl"), "zoo-prune")
