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
from tokenprune import PruneConfig, Stage
from tokenprune.apps.demo import build_demo_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=9, help="interleaved rounds (dense and every config per round)")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    model, inputs = build_demo_model()
    model(**inputs)  # warm-up
    configs = {"dense": None,
               "keep-all pre_llm": PruneConfig([Stage("pre_llm", keep=1.0)]),
               "keep-all layer 2": PruneConfig([Stage(2, keep=1.0)]),
               "fastv layer 2 keep 144": PruneConfig([Stage(2, keep=144)])}
    times: dict[str, list[float]] = {k: [] for k in configs}
    stage_ms: list[float] = []
    for _ in range(a.repeats):  # interleaved, so that machine drift hits every config alike
        for name, cfg in configs.items():
            handle = tp.apply(model, cfg) if cfg is not None else None
            if handle is not None:
                handle.on_stage(lambda timing: stage_ms.append(timing.ms))
            t = time.perf_counter()
            model(**inputs)
            times[name].append((time.perf_counter() - t) * 1e3)
            if handle is not None:
                handle.remove()
    dense = statistics.median(times["dense"])
    for name, xs in times.items():
        ms = statistics.median(xs)
        print(f"{name:28s} {ms:8.1f} ms  ({ms / dense:.3f} of dense)")
    ms = statistics.median([x for x in stage_ms if x > 0.5] or stage_ms)  # the fastv stage (keep-all returns early)
    print(f"fastv stage (q + cached keys + scoring + selection): {ms:.2f} ms = {100 * ms / dense:.2f}% of dense")


if __name__ == "__main__":
    main()
