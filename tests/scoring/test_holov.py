"""``holov``: regions on the grid, no region left empty while the budget allows, budgets follow importance, and
the kept set equals a direct re-computation on constructed cases."""
import torch

from tokenprune.registry import SCORERS
from tokenprune.runtime.items import MediaItem
from tokenprune.runtime.stage import build_view
from tokenprune.scoring.holov import holov_budgets, regions_of


def _view(hidden: torch.Tensor, grid, k: int):
    n = hidden.shape[1]
    item = MediaItem(0, "image", torch.arange(n), torch.arange(n), n, grid=grid)
    return build_view(hidden, torch.ones(1, n, dtype=torch.bool), [[item]], [[k]], None,
                      torch.Generator().manual_seed(0), None)


def test_regions_of_a_grid():
    cells = torch.arange(36)
    reg = regions_of(cells, 6, 6, 3).reshape(6, 6)
    assert reg[:2, :2].unique().tolist() == [0] and reg[4:, 4:].unique().tolist() == [8]
    assert regions_of(torch.arange(8), 2, 4, 3).reshape(2, 4).tolist() == [[0, 0, 1, 2], [3, 3, 4, 5]]


def test_every_region_keeps_a_token_and_budgets_follow_importance():
    imp = torch.zeros(36)
    imp[[0, 1, 6, 7]] = 10.0  # all importance in region 0 (the top-left 2×2 crop)
    reg = regions_of(torch.arange(36), 6, 6, 3)
    ks = holov_budgets(imp, reg, 12)
    assert ks.sum() == 12 and (ks >= 1).all() and ks[0] == 4  # 9 floor tokens; the other 3 go to region 0 (cap 4)
    assert holov_budgets(imp, reg, 4).tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0]  # fewer tokens than regions: ties
    imp[[0, 1, 2]] = torch.tensor([10.0, 10.0, 10.0])  # region 1 (cell 2) gets half of region 0's importance
    imp[[6, 7]] = 0.0
    assert holov_budgets(imp, reg, 12).tolist() == [3, 2, 1, 1, 1, 1, 1, 1, 1]


def test_holov_kept_set_on_a_constructed_image():
    """A 6×6 grid whose feature norms rise along the raster order; with ``base="norm"`` and 9 regions, a budget of
    12 keeps the largest-norm token of every region plus 3 more from the regions with the highest mean norm."""
    norms = torch.arange(1, 37, dtype=torch.float32)
    hidden = torch.ones(1, 36, 4) * norms[None, :, None] / 2
    scores = SCORERS.get("holov")(_view(hidden, (1, 6, 6), 12), base="norm", regions=3)[0]
    kept = torch.argsort(scores, descending=True, stable=True)[:12].sort().values.tolist()
    reg = regions_of(torch.arange(36), 6, 6, 3)
    ks = holov_budgets((norms - 1) / 35, reg, 12)
    expect = sorted(i for g in range(9) for i in torch.nonzero(reg == g).squeeze(1).flip(0)[:int(ks[g])].tolist())
    assert kept == expect
    assert all(any(reg[i] == g for i in kept) for g in range(9))  # no region empty
