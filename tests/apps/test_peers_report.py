"""The peer comparison's tables (evals/peers_report.py, evals/peers_batch.py) on hand-made records: no peer
package is needed for them."""
import statistics
from types import SimpleNamespace

import pytest

from evals.peers_batch import attach, describe
from evals.peers_report import agreement, paired, render, summarize


def method(label, side, keep, ms, hits, kept=None, vs=()):
    return SimpleNamespace(label=label, side=side, keep=keep, ms=ms, hits=hits, new_tokens=[4] * len(ms),
                           kept=kept or [None] * len(ms), vs=list(vs))


def test_paired_difference_and_interval():
    peer, mine = [10.0, 12.0, 11.0, 13.0], [9.0, 11.5, 11.0, 12.0]
    t = paired(peer, mine)
    d = [1.0, 0.5, 0.0, 1.0]
    half = 1.96 * statistics.stdev(d) / 2
    assert t["median"] == pytest.approx(0.75) and t["mean"] == pytest.approx(0.625)
    assert t["ci95"] == pytest.approx([0.625 - half, 0.625 + half])


def test_agreement_skips_unobserved_sets():
    a = [{1, 2}, {1, 3}, None]
    b = [{1, 2}, {1, 2}, {5, 6}]
    assert agreement(a, b, 2) == {"overlap": pytest.approx(0.75), "identical": pytest.approx(0.5)}


def test_summary_rows_and_rendering(capsys):
    ms = [
        method("dense", "-", None, [10.0, 10.0, 10.0], [1, 1, 0]),
        method("divprune@2", "tokenprune", 2, [5.0, 6.0, 7.0], [1, 0, 0], [{0, 1}, {0, 2}, {1, 2}]),
        method("AS-divprune@2", "AngelSlim", 2, [6.0, 6.5, 7.0], [1, 0, 0], [{0, 1}, {0, 2}, {1, 3}],
               ["divprune@2"]),
    ]
    rows = summarize(ms)
    by = {r["method"]: r for r in rows}
    assert by["divprune@2"]["ms_vs_dense"] == pytest.approx(0.6)
    assert by["AS-divprune@2"]["agreement"]["divprune@2"]["identical"] == pytest.approx(2 / 3)
    assert by["AS-divprune@2"]["time_vs"]["divprune@2"]["median"] == pytest.approx(0.5)
    assert "time_vs" not in by["divprune@2"] or by["divprune@2"]["time_vs"] == {}
    attach(rows, {"dense": {"ms_per_sample": 4.0, "accuracy": 0.5, "questions": 2, "ms": [64.0], "hits": [1, 0]},
                  "AS-divprune@2": {"error": "AssertionError: Batch size must be 1"}}, 16)
    assert describe(by["dense"]) == "4.0 (50.0%)" and describe(by["AS-divprune@2"]) == "fails"
    assert describe(by["divprune@2"]) == "-"
    render(rows, markdown=True)
    out = capsys.readouterr().out
    assert "| AS-divprune@2 | AngelSlim | 2 |" in out and "ms/sample at batch 16 (accuracy)" in out
