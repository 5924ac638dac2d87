"""Benchmark (not a test): cost of each scorer + selector on synthetic visual tokens.

    python -m evals.scorer_cost --tokens 576 2880 --dim 4096 --repeats 5

Times one image of V visual tokens with D-dim features (CPU, float32), median of ``repeats`` after a warm-up.
Attention-based scorers are timed with a given attention row (their q/k cost is part of the LM-stage benchmark).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tokenprune.registry import SCORERS, SELECTORS
from tokenprune.scoring.view import TokenView

CASES = [("random", "topk"), ("uniform", "topk"), ("norm", "topk"), ("debiased_attention", "topk"),
         ("norm", "maxmin"), ("attention", "mmr"), ("attention", "adaptive"),
         ("entropy", "topk"), ("norm", "maxmin_fast"), ("attention", "mmr_fast"), ("text_relevance", "dpp"),
         ("holov", "topk")]
TEXT = 32  # text tokens after the image (text_relevance reads them)


def make_view(v: int, d: int, k: int) -> TokenView:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(1, v + TEXT, d, generator=g)
    att = torch.rand(1, v, generator=g).softmax(-1)
    w = 24 if v % 24 == 0 else 1  # a 24-column grid (576 = 24 x 24; 2880 = 120 x 24)
    view = TokenView(hidden=feats, visual_index=torch.arange(v)[None], visual_mask=torch.ones(1, v, dtype=torch.bool),
                     item_id=torch.zeros(1, v, dtype=torch.long), local_index=torch.arange(v)[None],
                     item_len=torch.full((1, v), v), budget=torch.full((1, v), k),
                     valid=torch.ones(1, v + TEXT, dtype=torch.bool), layer=2, generator=g,
                     frame=torch.zeros(1, v, dtype=torch.long), cell=torch.arange(v)[None],
                     grid_hw=torch.tensor([v // w, w]).expand(1, v, 2), _vision_attention=att)
    view._attention_fn = lambda query, keys="all": att
    return view


def run(tokens: list[int], dim: int, keep: float, repeats: int, cases: list[tuple[str, str]] = CASES) -> list[dict]:
    rows = []
    for v in tokens:
        k = max(1, round(keep * v))
        for scorer, selector in cases:
            def once() -> None:
                view = make_view(v, dim, k)
                s = SCORERS.get(scorer)(view)[0]
                feats = view.features[0] if SELECTORS.get(selector).needs_features else None
                SELECTORS.get(selector)(s, feats, k)
            once()
            base = []
            for _ in range(repeats):  # the view construction alone, to subtract
                t = time.perf_counter()
                make_view(v, dim, k)
                base.append(time.perf_counter() - t)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                once()
                times.append(time.perf_counter() - t)
            ms = max(0.0, statistics.median(times) - statistics.median(base)) * 1e3
            rows.append({"tokens": v, "dim": dim, "keep": k, "scorer": scorer, "selector": selector, "ms": round(ms, 2)})
            print(f"V={v:5d} D={dim} k={k:4d}  {scorer:>20s} + {selector:<8s} {ms:8.2f} ms", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, nargs="+", default=[576, 2880])
    p.add_argument("--dim", type=int, default=4096)
    p.add_argument("--keep", type=float, default=0.25)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None, help="write JSON here")
    p.add_argument("--cases", default=None, help="scorer+selector pairs, e.g. norm+maxmin_fast,attention+mmr_fast")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads or max(1, torch.get_num_threads()))
    cases = [tuple(c.split("+")) for c in a.cases.split(",")] if a.cases else CASES
    rows = run(a.tokens, a.dim, a.keep, a.repeats, cases)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
