"""The temporal-redundancy scorer against a direct re-implementation, and on a static video end to end."""
import math

import pytest
import torch

import tokenprune as tp
from tokenprune import PruneConfig, Stage
from tokenprune.registry import SCORERS
from tokenprune.runtime.items import MediaItem
from tokenprune.runtime.stage import build_view
from tokenprune.testing.tiny import Item, make_inputs

from ..conftest import GEN, tiny


def _view(feats: torch.Tensor, grid):
    n = feats.shape[0]
    item = MediaItem(0, "video", torch.arange(n), torch.arange(n), n, grid=grid)
    return build_view(feats[None], torch.ones(1, n, dtype=torch.bool), [[item]], [[n]], None,
                      torch.Generator().manual_seed(0), None)


def reference(feats: torch.Tensor, grid, threshold: float = 0.0) -> list[float]:
    """Token by token: compare with the same cell one frame earlier."""
    t, h, w = grid
    norms = [float(v.norm()) for v in feats]
    out = []
    for i, v in enumerate(feats):
        f, c = divmod(i, h * w)
        if f == 0:
            out.append(2.0 + norms[i] / max(norms))
            continue
        prev = feats[(f - 1) * h * w + c]
        d = 1.0 - float(torch.dot(v / v.norm(), prev / prev.norm()))
        out.append(-math.inf if threshold > 0 and d <= threshold else d)
    return out


@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_matches_reference(threshold):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 8, generator=g)
    frames = [base, base.clone(), base.clone()]
    frames[1][3] += 2.0  # cell 3 changes in frame 1
    frames[2] = frames[1].clone()
    frames[2][0] = torch.randn(8, generator=g)  # cell 0 changes in frame 2
    feats = torch.cat(frames)
    got = SCORERS.get("temporal")(_view(feats, (3, 2, 2)), threshold=threshold)[0]
    expect = torch.tensor(reference(feats, (3, 2, 2), threshold))
    torch.testing.assert_close(got, expect, atol=1e-5, rtol=1e-5)
    picks = torch.argsort(got, descending=True, stable=True)[:6].sort().values.tolist()
    assert picks == [0, 1, 2, 3, 7, 8]  # the first frame, then the two cells that changed


def test_static_video_keeps_one_frame():
    """A video whose two temporal patches are identical: with a threshold, only the first patch's tokens survive,
    however large the budget."""
    model = tiny("qwen2_vl")
    inputs = make_inputs("qwen2_vl", model, [[Item((56, 84), video=True)]])
    pv = inputs["pixel_values_videos"]
    half = pv.shape[0] // 2
    pv[half:] = pv[:half]
    cfg = PruneConfig([Stage("pre_llm", keep=0.9, scorer="temporal", threshold=1e-4)])
    with tp.pruned(model, cfg) as h:
        cached = model.generate(**inputs, max_new_tokens=4, do_sample=False, **GEN)
        recomputed = model.generate(**inputs, max_new_tokens=4, do_sample=False, use_cache=False, **GEN)
        kept = h.stats.stages[0].kept_indices[0][0]
    assert kept == list(range(6))  # 1 x 2 x 3 tokens per temporal patch
    assert torch.equal(cached, recomputed)


def test_images_rank_by_norm():
    feats = torch.tensor([[1.0, 0], [3.0, 0], [2.0, 0]])
    got = SCORERS.get("temporal")(_view(feats, (1, 1, 3)))[0]
    assert torch.argsort(got, descending=True).tolist() == [1, 2, 0]


def evs_kept(feats: torch.Tensor, grid, keep: int) -> list[int]:
    """Efficient Video Sampling's selection, written from its description: every first-frame token first, then the
    others by ``1 − cos`` with the same cell one frame earlier, highest first, ties to the lower index."""
    t, h, w = grid
    x = feats.reshape(t, h * w, -1)
    change = 1.0 - torch.nn.functional.cosine_similarity(x[1:], x[:-1], dim=-1)
    score = torch.cat([torch.full((1, h * w), 255.0), change]).reshape(-1)
    return sorted(sorted(range(score.numel()), key=lambda i: (-float(score[i]), i))[:keep])


@pytest.mark.parametrize("seed", range(20))
def test_same_kept_set_as_evs_with_near_ties(seed):
    """Static cells differ by float noise only (near-ties, as a random tower gives for a still background) and some
    are exact copies (exact ties): the temporal scorer with top-k keeps EVS's set whenever the first frame fits."""
    g = torch.Generator().manual_seed(seed)
    t, h, w = 4, 3, 4
    base = torch.randn(1, h * w, 16, generator=g).repeat(t, 1, 1)
    scale = 10.0 ** -torch.randint(2, 5, (t, h * w, 1), generator=g).float()
    noise = torch.randn(t, h * w, 16, generator=g) * scale * (torch.rand(t, h * w, 1, generator=g) < 0.5)
    moving = torch.randn(t, h * w, 16, generator=g) * (torch.rand(t, h * w, 1, generator=g) < 0.2)
    feats = (base + noise + moving).reshape(t * h * w, 16)
    scores = SCORERS.get("temporal")(_view(feats, (t, h, w)))[0]
    for keep in (h * w, 20, 30):
        picks = torch.argsort(scores, descending=True, stable=True)[:keep].sort().values.tolist()
        assert picks == evs_kept(feats, (t, h, w), keep)
