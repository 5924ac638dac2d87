"""Query-agnostic baseline scorers: ``random`` and ``uniform``."""
from __future__ import annotations

import torch

from ..registry import SCORERS
from .view import TokenView


@SCORERS.register("random")
def random_scores(view: TokenView) -> torch.Tensor:
    """Uniform random scores, seeded per row from the config's seed and the stage: a row's selection depends on its
    own items only, never on its position in the batch (same seed -> same selection)."""
    b, v = view.visual_index.shape
    seed, dev = view.generator.initial_seed(), view.generator.device
    out = torch.zeros(b, v)
    for r in range(b):
        n = int(view.visual_mask[r].sum())
        out[r, :n] = torch.rand(n, generator=torch.Generator(device=dev).manual_seed(seed), device=dev).cpu()
    return out.to(view.hidden.device)


@SCORERS.register("uniform")
def uniform_scores(view: TokenView) -> torch.Tensor:
    """Spatial stride: for an image of ``N`` tokens and budget ``k`` the tokens ``round(linspace(0, N-1, k))``
    score 1, the rest 0 (minus a tiny index tie-break), so top-k keeps an even raster-order stride."""
    n = view.item_len.clamp(min=1).to(torch.float64)
    k = view.budget.clamp(min=1).to(torch.float64)
    i = view.local_index.to(torch.float64)
    # token i is on the grid iff some j in [0, k) has round(j*(N-1)/(k-1)) == i
    step = torch.where(k > 1, (n - 1) / (k - 1).clamp(min=1), torch.zeros_like(n))
    j = torch.where(step > 0, torch.round(i / step.clamp(min=1e-9)), torch.zeros_like(i)).clamp(max=k - 1)
    on_grid = torch.round(j * step) == i
    return on_grid.to(view.hidden.dtype) - i.to(view.hidden.dtype) * 1e-6


@SCORERS.register("norm", captures={"features"})
def norm_scores(view: TokenView) -> torch.Tensor:
    """L2 norm of each visual feature at this stage: a query-free importance (e.g. for ``mmr``)."""
    return view.features.float().norm(dim=-1)
