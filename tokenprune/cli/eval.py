"""``tokenprune eval``: ShapesVQA accuracy of presets x budgets."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="accuracy of presets x budgets on ShapesVQA (JSON, CSV, Pareto plots)")
    e.add_argument("--model", default="embedded",
                   help="a ShapesVQA model folder, 'embedded' (LLaVA-1.5 architecture) or 'embedded-qwen' (Qwen2-VL)")
    e.add_argument("--presets", default="fastv,divprune,visionzip,random")
    e.add_argument("--keep", default="288,192,144,64,32",
                   help="visual tokens kept per image or clip (a count, or a fraction below 1: 0.5,0.25)")
    e.add_argument("--split", default="test", help="train, val, test (images) or clips-val, clips-test "
                                                   "(8-frame clips; --model embedded-qwen)")
    e.add_argument("--limit", type=int, default=200, help="first N examples of the split")
    e.add_argument("--batch", type=int, default=16)
    e.add_argument("--layer", type=int, default=None, help="LM layer for in-LLM presets (default: the preset's)")
    e.add_argument("--out", default="results.json")
    e.add_argument("--backend", choices=["harness", "lmms-eval"], default="harness",
                   help="tokenprune's in-process harness, or lmms-eval (in its own venv: scripts/setup_lmms.sh)")
    e.add_argument("--tasks", default="shapesvqa", help="lmms-eval tasks (--backend lmms-eval)")
    e.add_argument("--model-args", default="",
                   help="more lmms-eval --model_args for every run, e.g. dtype=bfloat16,device=cuda (--backend lmms-eval)")
    e.add_argument("--include-path", default=None,
                   help="lmms-eval task folder (default: the ShapesVQA tasks, written for the run)")


def _f(x: object, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def run(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    from ..errors import InputError
    from ..apps.quality import Sweep, question_kinds, run_sweep, save

    def split(text: str) -> list[str]:
        return [x for x in text.split(",") if x]

    try:
        keeps: list[int | float] = [float(k) if "." in k else int(k) for k in split(args.keep)]
    except ValueError as e:
        raise InputError(f"--keep: expected comma-separated counts or fractions, got {args.keep!r}") from e
    if args.backend == "lmms-eval":
        from ..integrations.lmms_eval.sweep import LmmsSweep, run_lmms_sweep

        if args.limit < 1 or args.batch < 1:
            raise InputError(f"--limit/--batch: got {args.limit}/{args.batch}; allowed: >= 1")
        lsw = LmmsSweep(model=args.model, tasks=split(args.tasks), presets=split(args.presets), keeps=keeps,
                        limit=args.limit, batch=args.batch, layer=args.layer, include_path=args.include_path,
                        model_args=args.model_args)
        with Progress(console=console, transient=True) as prog:
            task = prog.add_task("loading", total=len(lsw.presets) * len(keeps) + 1)
            result = run_lmms_sweep(lsw, progress=lambda d: (prog.update(task, description=d), prog.advance(task)))
    else:
        sw = Sweep(model=args.model, presets=split(args.presets), keeps=keeps, split=args.split, limit=args.limit,
                   batch=args.batch, layer=args.layer)
        sw.validate()
        n = len(sw.presets) * len(sw.keeps) + 1
        with Progress(console=console, transient=True) as prog:
            task = prog.add_task("loading", total=n)
            result = run_sweep(sw, progress=lambda d: (prog.update(task, description=d), prog.advance(task)))
    paths = save(result, args.out)
    kinds = question_kinds(result)
    visual = result.get("visual_tokens", 576)
    d = result["dense"]
    t = Table(title=f"{result.get('backend', 'harness')}: {result['split']} (n={result['limit']}), model "
                    f"{result['model']}")
    for col in ("method", f"kept/{visual:g}", "accuracy", *kinds, "retention", "ms/sample", "speedup", "LM FLOPs"):
        t.add_column(col)
    t.add_row("dense", f"{visual:g}", _f(d["accuracy"]), *[_f(d.get(k)) for k in kinds], "1.000",
              _f(d["ms_per_sample"], ".1f"), "1.00x", "1.000")
    for r in result["rows"]:
        t.add_row(r["preset"], str(r["keep"]), _f(r["accuracy"]), *[_f(r.get(k)) for k in kinds],
                  _f(r["retention"]), _f(r["ms_per_sample"], ".1f"), f"{r['speedup']:.2f}x", _f(r["flops_ratio"]))
    console.print(t)
    console.print("written: " + ", ".join(paths))
    return 0
