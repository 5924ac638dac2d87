"""Two ``tokenprune eval`` result files side by side: per preset and budget, accuracy (retention) and the per-kind
breakdown on each model, and how the two models rank the presets (Kendall's τ per budget, top-3 of each).

    python -m evals.side_by_side evals/quality_test200.json evals/quality_qwen_test200.json \\
        --pairs 288:0.5,192:0.333,144:0.25,64:0.111,32:0.056 [--markdown]

``--pairs A:B`` matches budget ``A`` of the first file with budget ``B`` of the second (equal fractions of each
model's visual tokens); presets present in only one file are listed with a dash on the other side.
"""
from __future__ import annotations

import argparse
import json
from itertools import combinations
from typing import Any


def _rows(path: str) -> tuple[dict, dict[tuple[str, str], dict]]:
    data = json.loads(open(path).read())
    return data, {(r["preset"], str(r["keep"])): r for r in data["rows"]}


def kendall_tau(a: dict[str, float], b: dict[str, float]) -> float:
    """Kendall's τ-b of two scorings of the same items (ties count as neither concordant nor discordant)."""
    keys = sorted(set(a) & set(b))
    conc = disc = ties_a = ties_b = 0
    for x, y in combinations(keys, 2):
        da, db = a[x] - a[y], b[x] - b[y]
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif (da > 0) == (db > 0):
            conc += 1
        else:
            disc += 1
    n = conc + disc
    denom = ((n + ties_a) * (n + ties_b)) ** 0.5
    return (conc - disc) / denom if denom else float("nan")


def kinds_of(row: dict) -> str:
    names = [k for k in ("temporal", "localized", "global") if k in row]
    return " / ".join(f"{row[k]:.2f}" for k in names)


def compare(first: str, second: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    da, ra = _rows(first)
    db, rb = _rows(second)
    presets = list(dict.fromkeys([p for p, _ in ra] + [p for p, _ in rb]))
    table, ranking = [], []
    for ka, kb in pairs:
        acc_a = {p: ra[(p, ka)]["accuracy"] for p in presets if (p, ka) in ra}
        acc_b = {p: rb[(p, kb)]["accuracy"] for p in presets if (p, kb) in rb}
        for p in presets:
            x, y = ra.get((p, ka)), rb.get((p, kb))
            table.append({"preset": p, "budget": f"{ka} | {kb}",
                          "first": None if x is None else {"accuracy": x["accuracy"], "retention": x["retention"],
                                                           "kinds": kinds_of(x)},
                          "second": None if y is None else {"accuracy": y["accuracy"], "retention": y["retention"],
                                                            "kinds": kinds_of(y)}})
        top = lambda acc: sorted(acc, key=lambda p: -acc[p])[:3]  # noqa: E731
        ranking.append({"budget": f"{ka} | {kb}", "kendall_tau": kendall_tau(acc_a, acc_b),
                        "common_presets": len(set(acc_a) & set(acc_b)), "top3_first": top(acc_a),
                        "top3_second": top(acc_b)})
    return {"first": {"file": first, "dense": da["dense"]}, "second": {"file": second, "dense": db["dense"]},
            "table": table, "ranking": ranking}


def render(res: dict[str, Any]) -> None:
    def cell(c: dict | None) -> str:
        return "-" if c is None else f"{100 * c['accuracy']:.1f}% ({c['retention']:.2f}) {c['kinds']}"

    for side in ("first", "second"):
        d = res[side]["dense"]
        print(f"dense {side}: {100 * d['accuracy']:.1f}% {kinds_of(d)}  ({res[side]['file']})")
    print("\n| preset | budget | first: acc (retention) kinds | second: acc (retention) kinds |\n|---|---|---|---|")
    for r in res["table"]:
        print(f"| `{r['preset']}` | {r['budget']} | {cell(r['first'])} | {cell(r['second'])} |")
    print("\n| budget | Kendall τ | presets | top-3 first | top-3 second |\n|---|---|---|---|---|")
    for r in res["ranking"]:
        print(f"| {r['budget']} | {r['kendall_tau']:.2f} | {r['common_presets']} | {', '.join(r['top3_first'])} | "
              f"{', '.join(r['top3_second'])} |")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--pairs", required=True, help="A:B budget pairs, comma-separated")
    ap.add_argument("--out", default=None, help="also write the comparison as JSON")
    args = ap.parse_args(argv)
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    res = compare(args.first, args.second, pairs)  # type: ignore[arg-type]
    render(res)
    if args.out:
        from tokenprune.results import write_json

        write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
