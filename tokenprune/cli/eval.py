"""``tokenprune eval``: ShapesVQA accuracy of presets x budgets."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="accuracy of presets x budgets on ShapesVQA (JSON, CSV, Pareto plots)")
    e.add_argument("--model", default="embedded", help="a ShapesVQA model folder, or 'embedded'")
    e.add_argument("--presets", default="fastv,divprune,visionzip,random")
    e.add_argument("--keep", default="288,192,144,64,32", help="visual tokens kept per image (of 576)")
    e.add_argument("--split", default="test")
    e.add_argument("--limit", type=int, default=200, help="first N examples of the split")
    e.add_argument("--batch", type=int, default=16)
    e.add_argument("--layer", type=int, default=None, help="LM layer for in-LLM presets (default: the preset's)")
    e.add_argument("--out", default="results.json")


def run(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    from ..errors import InputError
    from ..apps.quality import Sweep, run_sweep, save

    def split(text: str) -> list[str]:
        return [x for x in text.split(",") if x]

    try:
        keeps = [int(k) for k in split(args.keep)]
    except ValueError as e:
        raise InputError(f"--keep: expected comma-separated integers, got {args.keep!r}") from e
    sw = Sweep(model=args.model, presets=split(args.presets), keeps=keeps, split=args.split, limit=args.limit,
               batch=args.batch, layer=args.layer)
    sw.validate()
    n = len(sw.presets) * len(sw.keeps) + 1
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task("loading", total=n)
        result = run_sweep(sw, progress=lambda d: (prog.update(task, description=d), prog.advance(task)))
    paths = save(result, args.out)
    d = result["dense"]
    t = Table(title=f"ShapesVQA {result['split']} (n={result['limit']}), model {result['model']}")
    for col in ("method", "kept/576", "accuracy", "localized", "global", "retention", "ms/sample", "speedup",
                "LM FLOPs"):
        t.add_column(col)
    t.add_row("dense", "576", f"{d['accuracy']:.3f}", f"{d['localized']:.3f}", f"{d['global']:.3f}", "1.000",
              f"{d['ms_per_sample']:.1f}", "1.00x", "1.000")
    for r in result["rows"]:
        t.add_row(r["preset"], str(r["keep"]), f"{r['accuracy']:.3f}", f"{r['localized']:.3f}", f"{r['global']:.3f}",
                  f"{r['retention']:.3f}", f"{r['ms_per_sample']:.1f}", f"{r['speedup']:.2f}x",
                  f"{r['flops_ratio']:.3f}")
    console.print(t)
    console.print("written: " + ", ".join(paths))
    return 0
