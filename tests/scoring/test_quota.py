"""``frame_quota``: budgets follow frame relevance; compared with a direct computation on a constructed case."""
import torch

from tokenprune.registry import SCORERS
from tokenprune.runtime.items import MediaItem
from tokenprune.runtime.stage import build_view
from tokenprune.scoring.quota import allocate


def _view(att: torch.Tensor, grid, k: int):
    n = att.numel()
    item = MediaItem(0, "video", torch.arange(n), torch.arange(n), n, grid=grid)
    view = build_view(torch.randn(1, n, 4), torch.ones(1, n, dtype=torch.bool), [[item]], [[k]], None,
                      torch.Generator().manual_seed(0), lambda v, q, keys="all": att[None])
    return view


def test_allocate_largest_remainder_and_caps():
    assert allocate(torch.tensor([0.5, 0.3, 0.2]), 10, torch.tensor([10, 10, 10])).tolist() == [5, 3, 2]
    assert allocate(torch.tensor([0.9, 0.05, 0.05]), 10, torch.tensor([4, 10, 10])).tolist() == [4, 3, 3]
    assert allocate(torch.tensor([1.0, 0.0]), 3, torch.tensor([4, 4])).tolist() == [3, 0]
    assert int(allocate(torch.tensor([0.2, 0.2, 0.6]), 7, torch.tensor([2, 2, 2])).sum()) == 6


def test_frame_budgets_follow_relevance():
    """Three frames of 4 tokens; frame 2 gets most attention, frame 0 some, frame 1 almost none: with k = 6 the
    budgets are 2 / 0 / 4 and inside each frame the most-attended tokens are kept."""
    att = torch.tensor([0.30, 0.10, 0.20, 0.00,   0.01, 0.01, 0.00, 0.00,   0.50, 0.70, 0.60, 0.40])
    scores = SCORERS.get("frame_quota")(_view(att, (3, 2, 2), 6))[0]
    kept = torch.argsort(scores, descending=True, stable=True)[:6].sort().values.tolist()
    rel = torch.tensor([att[0:4].mean(), att[4:8].mean(), att[8:12].mean()])
    ks = allocate(rel, 6, torch.tensor([4, 4, 4])).tolist()
    assert ks == [2, 0, 4]
    assert kept == [0, 2, 8, 9, 10, 11]
