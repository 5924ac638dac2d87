"""Tables of ``evals.peers``: per-method summaries (accuracy, median time, kept-set agreement, paired time
differences) and their rendering. Pure Python over the collected per-question records: no peer needed."""
from __future__ import annotations

import statistics
from typing import Any


def agreement(a: list[set[int] | None], b: list[set[int] | None], keep: int) -> dict[str, float]:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    return {"overlap": statistics.fmean(len(x & y) / keep for x, y in pairs),
            "identical": statistics.fmean(float(x == y) for x, y in pairs)}


def paired(peer: list[float], mine: list[float]) -> dict[str, float]:
    """Per question, the peer's time minus ours (ms; > 0: ours faster): median, mean and the mean's 95% interval
    (normal approximation) over the questions both ran."""
    d = [a - b for a, b in zip(peer, mine)]
    half = 1.96 * statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
    return {"median": statistics.median(d), "mean": statistics.fmean(d), "ci95": [statistics.fmean(d) - half,
                                                                                  statistics.fmean(d) + half]}


def summarize(methods: list[Any]) -> list[dict[str, Any]]:
    by = {m.label: m for m in methods}
    dense_ms = statistics.median(by["dense"].ms)
    rows = []
    for m in methods:
        med = statistics.median(m.ms)
        kept_n = [len(s) for s in m.kept if s is not None]
        rows.append({"method": m.label, "side": m.side, "keep": m.keep, "accuracy": statistics.fmean(m.hits),
                     "ms_median": med, "ms_vs_dense": med / dense_ms, "new_tokens": statistics.fmean(m.new_tokens),
                     "kept_visual_mean": statistics.fmean(kept_n) if kept_n else None,
                     "agreement": {v: agreement(by[v].kept, m.kept, m.keep) for v in m.vs if v in by},
                     "time_vs": {v: paired(m.ms, by[v].ms) for v in m.vs if v in by and m.side == "AngelSlim"},
                     "hits": m.hits, "ms": [round(t, 3) for t in m.ms]})
    return rows


def render(rows: list[dict[str, Any]], markdown: bool) -> None:
    from evals.peers_batch import describe

    size = next((r["batch"]["size"] for r in rows if "batch" in r), None)
    head = ["method", "side", "keep", "accuracy", "ms/sample", "× dense", "kept", "kept-set overlap (identical)"]
    head += [f"ms/sample at batch {size} (accuracy)"] if size else []
    body = []
    for r in rows:
        agr = "; ".join(f"vs {v.split('@')[0]}: {a['overlap']:.2f} ({a['identical']:.0%})"
                        for v, a in r["agreement"].items())
        kept = "-" if r["kept_visual_mean"] is None else f"{r['kept_visual_mean']:.1f}"
        body.append([r["method"], r["side"], str(r["keep"] or 576), f"{r['accuracy']:.1%}", f"{r['ms_median']:.1f}",
                     f"{r['ms_vs_dense']:.2f}", kept, agr or "-"] + ([describe(r)] if size else []))
    if markdown:
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for b in body:
            print("| " + " | ".join(b) + " |")
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="tokenprune vs peers, embedded ShapesVQA model, batch 1")
    for h in head:
        t.add_column(h)
    for b in body:
        t.add_row(*b)
    Console(width=160).print(t)
