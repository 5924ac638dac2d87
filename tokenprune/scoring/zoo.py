"""``zoo`` scorer (ZOO-Prune): zeroth-order sensitivity of the projector to each visual token's input."""
from __future__ import annotations

from typing import Callable

import torch

from ..registry import SCORERS, Option
from .view import TokenView

DIRECTIONS = Option("directions", int, 64, "random unit directions per call (forward passes of the projector: 2 x "
                    "directions x tokens rows)", low=1)
EPS = Option("eps", float, 0.01, "step along each direction", low=1e-8)


def projector_sensitivity(project: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, directions: int,
                          eps: float, generator: torch.Generator, chunk: int = 8) -> torch.Tensor:
    """``x [T, d]`` projector inputs -> ``[T]``: ``s_i = mean_j ‖P(x_i + ε u_j) − P(x_i − ε u_j)‖₂ / 2ε`` over
    ``directions`` Gaussian directions normalised to unit length, shared by every token (ZOO-Prune's central
    difference). The projector runs on ``chunk`` directions at a time to bound memory."""
    u = torch.randn(directions, x.shape[-1], generator=generator, device=generator.device).to(x.device, x.dtype)
    u = u / (u.norm(dim=-1, keepdim=True) + 1e-12)
    total = torch.zeros(x.shape[0], dtype=torch.float32, device=x.device)
    for start in range(0, directions, chunk):
        step = eps * u[start:start + chunk, None, :]  # [c, 1, d]
        diff = project(x[None] + step) - project(x[None] - step)  # [c, T, D]
        total += diff.float().norm(dim=-1).sum(0) / (2 * eps)
    return total / directions


@SCORERS.register("zoo", options=[DIRECTIONS, EPS], captures={"projector_sensitivity"})
def zoo_scores(view: TokenView, *, directions: int = 64, eps: float = 0.01) -> torch.Tensor:
    """ZOO-Prune (Kim et al., CVPR 2026, "Training-Free Token Pruning via Zeroth-Order Gradient Estimation"): a
    token's sensitivity is how much the projector's output moves when its input moves a step ``eps`` along random
    unit directions (``projector_sensitivity``), captured once per image with the config's seed; pair with the
    ``sads`` selector (sensitivity x diversity) as the paper does."""
    out = torch.zeros(view.visual_mask.shape, dtype=torch.float32, device=view.hidden.device)
    for r, m in view.item_masks():
        idx = m.nonzero().squeeze(1)
        out[r, idx] = view.vision_flow(r, int(view.item_id[r, idx[0]]))["sensitivity"].float().to(out.device)
    return out
