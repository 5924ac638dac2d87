"""Soak (slow; its own CI step): 1,000 generate() calls with rotating presets and batch shapes on one tiny model.

Run: ``.venv/bin/python -m pytest -m slow tests/test_soak.py -s`` (prints calls, RSS before/after, errors).
"""
import gc
import itertools
import os
import time

import pytest
import tokenprune as tp
from tokenprune.testing.tiny import Item, make_inputs

from .conftest import GEN, tiny

CALLS = int(os.environ.get("TOKENPRUNE_SOAK_CALLS", "1000"))
RSS_BOUND_MB = 64  # growth allowed after the warm-up calls


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@pytest.mark.slow
def test_soak_generate():
    model = tiny("qwen2_vl")
    shapes = [[[Item((56, 56))]], [[Item((56, 84))], []], [[Item((56, 56)), Item((84, 56))], [Item((56, 56))], []]]
    batches = [make_inputs("qwen2_vl", model, s, seed=i) for i, s in enumerate(shapes)]
    presets = [("fastv", dict(keep=2, layer=1)), ("divprune", dict(keep=3)), ("pyramiddrop", dict(keep=1)),
               ("random", dict(keep=0.5)), ("idpruner", dict(keep=2)), ("visionzip", dict(keep=4, contextual=1))]
    plan = itertools.cycle(itertools.product(presets, range(len(batches))))
    errors, rss0, t0 = 0, None, time.perf_counter()
    for call in range(CALLS):
        (name, kw), b = next(plan)
        inputs = batches[b]
        try:
            with tp.pruned(model, name, **kw) as h:
                model.generate(**inputs, max_new_tokens=2, do_sample=False, **GEN)
                expect = [int((r == 150).sum()) for r in inputs["input_ids"]]
                assert h.stats.stages[0].visual_in == expect  # the stats are this call's
        except tp.TokenPruneError:
            errors += 1
        if call == 49:
            gc.collect()
            rss0 = _rss_mb()
    gc.collect()
    rss1 = _rss_mb()
    print(f"\nsoak: {CALLS} generate() calls in {time.perf_counter() - t0:.0f} s, {errors} refused, "
          f"RSS after 50 calls {rss0:.0f} MB, after {CALLS} {rss1:.0f} MB (growth {rss1 - rss0:+.1f} MB, "
          f"bound {RSS_BOUND_MB} MB)")
    assert errors == 0
    assert rss1 - rss0 < RSS_BOUND_MB
    assert not any("_tokenprune_handle" in vars(m) for m in [model])
