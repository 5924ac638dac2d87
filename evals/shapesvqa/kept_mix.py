"""Probe (a benchmark, not a method): does the embedded LLaVA model need the *mix* of object and background tokens
kept, not only the objects? Two throw-away scorers, registered here only:

- ``probe_unique``: 1 − mean cosine similarity of a token's projector feature to the image's tokens (object
  patches are rare, so they score high: top-k keeps mostly objects);
- ``probe_grid_unique``: a fraction ``--grid`` of the budget on an even raster grid (as ``uniform``), the rest by
  ``probe_unique``.

    python -m evals.shapesvqa.kept_mix --limit 200 --keep 144,64 --grid 0,0.5,0.75
"""
from __future__ import annotations

import argparse
import dataclasses

import torch

import tokenprune as tp
from tokenprune import PruneConfig, Stage
from tokenprune.apps.quality import accuracy, prepare
from tokenprune.registry import SCORERS
from tokenprune.scoring.basic import uniform_scores
from tokenprune.shapesvqa import model as M

GRID = {"share": 0.5}


def unique(view) -> torch.Tensor:
    f = torch.nn.functional.normalize(view.features.float(), dim=-1)
    out = torch.zeros(view.visual_index.shape, device=f.device)
    for r, m in view.item_masks():
        g = f[r, m]
        out[r, m] = 1 - (g @ g.T).mean(1)
    return out


def grid_unique(view) -> torch.Tensor:
    k = (view.budget.float() * GRID["share"]).round().long().clamp(min=1)
    on_grid = uniform_scores(dataclasses.replace(view, budget=k)) > 0.5
    return torch.where(on_grid, 2.0, 0.0) + unique(view)  # grid tokens first, then the most unique (in [0, 2))


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--keep", default="144,64")
    ap.add_argument("--grid", default="0,0.5,0.75", help="grid shares of the budget (0: probe_unique alone)")
    args = ap.parse_args(argv)
    for name, fn in (("probe_unique", unique), ("probe_grid_unique", grid_unique)):
        if name not in SCORERS.names():
            SCORERS.register(name, captures={"features"})(fn)
    model, proc = M.load("embedded")
    exs, inputs = prepare(proc, "test", args.limit, 16)
    rows = []
    for keep in (int(k) for k in args.keep.split(",")):
        for share in (float(g) for g in args.grid.split(",")):
            GRID["share"] = share
            scorer = "probe_grid_unique" if share > 0 else "probe_unique"
            with tp.pruned(model, PruneConfig([Stage("pre_llm", keep=keep, scorer=scorer, selector="topk")])):
                r = accuracy(model, proc, exs, inputs)
            rows.append({"keep": keep, "grid_share": share, **{k: r[k] for k in ("accuracy", "localized", "global")}})
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
