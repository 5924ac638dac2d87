"""Accuracy of the embedded ShapesVQA model after weight pruning, per method (a study, not a test).

    python -m evals.weights_quality [--limit 200 --calib-samples 32 --out evals/weights_quality.json]

MLP channels at 10/20/30% and 1 and 2 blocks removed, with wanda-sp, flap and taylor importance (stock plans,
calibrated on ShapesVQA train scenes through the whole VLM); calibration wall time per run.
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from tokenprune.apps.quality import accuracy, prepare
from tokenprune.shapesvqa import model as M
from tokenprune.weights import WeightSpec, prune
from tokenprune.weights.pipeline import calibration_batches
from tokenprune.results import write_json


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--calib-samples", type=int, default=32)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    model, processor = M.load(args.model)
    exs, inputs = prepare(processor, "test", args.limit, 16)
    calib = calibration_batches(processor, "synthetic", args.calib_samples)
    dense = accuracy(model, processor, exs, inputs)
    print(f"dense: {dense['accuracy']:.3f}")
    rows = []
    for method in ("wanda-sp", "flap", "taylor"):
        for kw in (dict(mlp=0.1), dict(mlp=0.2), dict(mlp=0.3), dict(blocks=1), dict(blocks=2)):
            m = copy.deepcopy(model)
            t = time.perf_counter()
            prune(m, WeightSpec(method=method, **kw), calib)
            secs = time.perf_counter() - t
            params = sum(p.numel() for p in m.model.language_model.parameters())
            r = accuracy(m, processor, exs, inputs)
            rows.append({"method": method, **kw, **r, "calibration_s": secs,
                         "lm_param_ratio": params / sum(p.numel() for p in model.model.language_model.parameters())})
            print(f"{method:9} {json.dumps(kw):16} acc {r['accuracy']:.3f} (loc {r['localized']:.3f} glob "
                  f"{r['global']:.3f})  LM params {rows[-1]['lm_param_ratio']:.3f}  calib {secs:.1f}s")
    result = {"model": args.model, "limit": args.limit, "calib_samples": args.calib_samples, "dense": dense,
              "rows": rows, "threads": torch.get_num_threads()}
    return write_json(args.out, result)


if __name__ == "__main__":
    main()
