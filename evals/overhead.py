"""Benchmark (not a test): keep-all overhead and the cost of a FastV stage on the demo model.

    python -m evals.overhead --repeats 7

Times the full forward (vision tower + LM prefill) of the demo batch, dense and under each config, median of
``repeats`` after a warm-up, and the time spent in ``run_stage`` (q/k recomputation, scoring, selection).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import tokenprune as tp
import tokenprune.runtime.engine as engine
from tokenprune import PruneConfig, Stage
from tokenprune.demo import build_demo_model


def _median_ms(fn, repeats: int) -> float:
    fn()
    xs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t)
    return statistics.median(xs) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    torch.set_grad_enabled(False)
    model, inputs = build_demo_model()
    run = lambda: model(**inputs)  # noqa: E731
    dense = _median_ms(run, a.repeats)
    print(f"{'dense':28s} {dense:8.1f} ms")
    configs = {"keep-all pre_llm": PruneConfig([Stage("pre_llm", keep=1.0)]),
               "keep-all layer 2": PruneConfig([Stage(2, keep=1.0)]),
               "fastv layer 2 keep 144": PruneConfig([Stage(2, keep=144)])}
    for name, cfg in configs.items():
        with tp.pruned(model, cfg):
            ms = _median_ms(run, a.repeats)
        print(f"{name:28s} {ms:8.1f} ms  ({ms / dense:.3f} of dense)")
    stage_ms: list[float] = []
    original = engine.run_stage

    def timed(*args, **kwargs):
        t = time.perf_counter()
        out = original(*args, **kwargs)
        stage_ms.append((time.perf_counter() - t) * 1e3)
        return out

    engine.run_stage = timed
    try:
        with tp.pruned(model, configs["fastv layer 2 keep 144"]):
            _median_ms(run, a.repeats)
    finally:
        engine.run_stage = original
    ms = statistics.median(stage_ms)
    print(f"fastv stage (q/k + scoring + selection): {ms:.2f} ms = {100 * ms / dense:.2f}% of the dense forward")


if __name__ == "__main__":
    main()
