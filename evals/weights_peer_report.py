"""Tables and paired tests from ``evals/weights_peer.json`` (markdown on stdout).

    python -m evals.weights_peer_report evals/weights_peer.json

Per MLP ratio: every variant's accuracy (overall / localized / global), LM parameters and calibration cost; then
exact two-sided McNemar tests (binomial on the discordant questions) for the best of ours vs the best Torch-Pruning
criterion, and for ``taylor-pm`` vs ``taylor``.
"""
from __future__ import annotations

import json
import math
import sys


def mcnemar(a: list[int], b: list[int]) -> tuple[int, int, float]:
    """(questions only a got right, only b got right, exact two-sided p)."""
    only_a = sum(x and not y for x, y in zip(a, b))
    only_b = sum(y and not x for x, y in zip(a, b))
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return only_a, only_b, p


def label(r: dict) -> str:
    if r["side"] == "torch-pruning":
        return f"Torch-Pruning {r['method']}"
    return f"ours {r['method']}" + (" + reconstruction" if r["reconstruct"] and r["method"] != "ziplm" else "")


def report(res: dict) -> str:
    out = [f"Dense: {res['dense']['accuracy']:.3f} on the first {res['limit']} test questions; "
           f"{res['calib_samples']} calibration scenes.", ""]
    for ratio in sorted({r["mlp"] for r in res["rows"]}):
        rows = [r for r in res["rows"] if r["mlp"] == ratio]
        out += [f"### MLP −{ratio:.0%} (width {rows[0]['width']})", "",
                "| variant | accuracy | localized | global | LM params | calibration | peak RSS |", "|---|---|---|---|---|---|---|"]
        for r in sorted(rows, key=lambda r: -r["accuracy"]):
            rss = f"{r['calibration_peak_rss'] / 2**20:.0f} MB" if r.get("calibration_peak_rss") else "-"
            out.append(f"| {label(r)} | {r['accuracy']:.3f} | {r['localized']:.3f} | {r['global']:.3f} | "
                       f"{r['lm_params'] / res['dense_lm_params']:.3f} | {r['calibration_s']:.1f} s | {rss} |")
        ours = max((r for r in rows if r["side"] == "ours"), key=lambda r: r["accuracy"])
        peer = max((r for r in rows if r["side"] != "ours"), key=lambda r: r["accuracy"])
        a, b, p = mcnemar(ours["hits"], peer["hits"])
        out += ["", f"Best of ours ({label(ours)}, {ours['accuracy']:.3f}) vs best Torch-Pruning ({label(peer)}, "
                    f"{peer['accuracy']:.3f}): {100 * (ours['accuracy'] - peer['accuracy']):+.1f} points; "
                    f"{a} vs {b} discordant questions, exact McNemar p = {p:.2g}."]
        by = {(r["side"], r["method"], r["reconstruct"]): r for r in rows}
        t, pm = by.get(("ours", "taylor", False)), by.get(("ours", "taylor-pm", False))
        if t and pm:
            a, b, p = mcnemar(pm["hits"], t["hits"])
            out.append(f"`taylor-pm` {pm['accuracy']:.3f} vs `taylor` {t['accuracy']:.3f}: {a} vs {b} discordant, "
                       f"p = {p:.2g}.")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(report(json.loads(open(sys.argv[1] if len(sys.argv) > 1 else "evals/weights_peer.json").read())))
