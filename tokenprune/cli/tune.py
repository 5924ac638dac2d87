"""``tokenprune tune``: the best pruning config for a model at a budget, from calibration questions."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

#: library parameter names -> this command's flags (error messages)
FLAGS = {"data": "--data", "mode": "--mode", "presets": "--presets", "keep": "--keep",
         "calib/batch/max_new_tokens": "--calib/--batch/--max-new-tokens"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("tune", help="rank presets (and layers) on calibration questions; write the winning config")
    t.add_argument("--model", default="embedded", help="'embedded', 'embedded-qwen', or a model folder")
    t.add_argument("--keep", default="64", help="visual tokens kept per item (a count, or a fraction below 1)")
    t.add_argument("--calib", type=int, default=200, help="calibration questions")
    t.add_argument("--data", default=None, help="JSONL (or a folder with data.jsonl) of image/question[/answer]; "
                                                "default for the embedded models: the ShapesVQA val split")
    t.add_argument("--mode", default="auto", choices=["auto", "answers", "agreement"],
                   help="rank by accuracy, or by agreement with the dense model (auto: answers when given)")
    t.add_argument("--presets", default="", help="comma-separated candidates (default: every preset)")
    t.add_argument("--layers", default="", help="more LM layers to try for single-layer in-LLM presets, e.g. 1,2,3")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--max-new-tokens", type=int, default=8, help="generation length for --data models")
    t.add_argument("--out", default="auto-tuned.yaml", help="the winning config (.yaml or .json)")


def run(args: argparse.Namespace, console: Console) -> int:
    import json

    from rich.progress import Progress

    from ..apps.tune import Tune, candidates, run_tune, write_config
    from ..errors import InputError

    split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    try:
        keep: int | float = float(args.keep) if "." in args.keep else int(args.keep)
        layers = [int(x) for x in split(args.layers)]
    except ValueError as e:
        raise InputError(f"keep/layers: expected numbers, got {args.keep!r} / {args.layers!r}") from e
    t = Tune(model=args.model, keep=keep, calib=args.calib, data=args.data, presets=split(args.presets),
             layers=layers, mode=args.mode, batch=args.batch, max_new_tokens=args.max_new_tokens)
    t.validate()
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task("loading", total=len(candidates(t, 64)) + 1)
        res = run_tune(t, progress=lambda d: (prog.update(task, description=d), prog.advance(task)))
    what = "accuracy" if res["mode"] == "answers" else "agreement with dense"
    table = Table(title=f"tune: {res['model']}, keep {res['keep']}, {res['calib']} calibration questions "
                        f"(dense {what}: {res['dense_score']:.3f})")
    for col in ("rank", "candidate", what, "LM FLOPs"):
        table.add_column(col)
    for i, r in enumerate(res["rows"], 1):
        if "score" in r:
            table.add_row(str(i), r["candidate"], f"{r['score']:.3f}", f"{r['flops_ratio']:.3f}")
        else:
            table.add_row("-", r["candidate"], "skipped", r["skipped"][:60])
    console.print(table)
    write_config(res["best"], args.out)
    with open(args.out + ".ranking.json", "w") as f:
        json.dump(res, f, indent=2)
    console.print(f"best: {res['best_candidate']} -> {args.out} (tp.apply(model, {args.out!r})); ranking: "
                  f"{args.out}.ranking.json")
    return 0
