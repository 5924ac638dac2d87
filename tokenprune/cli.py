"""The ``tokenprune`` command line."""
from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from .errors import TokenPruneError


def _info(args: argparse.Namespace, console: Console) -> int:
    from .adapters import ADAPTERS
    from .presets import PRESETS
    from .registry import REDUCERS, SCORERS, SELECTORS

    t = Table(title="Adapters (config.model_type)")
    t.add_column("model_type")
    t.add_column("adapter")
    for k in sorted(ADAPTERS):
        t.add_row(k, ADAPTERS[k].__name__)
    console.print(t)
    p = Table(title="Presets (stages shown for a 32-layer LM)")
    p.add_column("name")
    p.add_column("stages")
    p.add_column("description")
    for name in sorted(PRESETS):
        desc, stages = PRESETS[name]
        p.add_row(name, json.dumps(stages(32)), desc)
    console.print(p)
    console.print(f"scorers: {', '.join(n for n in SCORERS.names() if not n.startswith('_'))}")
    console.print(f"selectors: {', '.join(SELECTORS.names())}   reducers: {', '.join(REDUCERS.names())}")
    return 0


def _demo(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    from .demo import DEMO_GEOMETRY, DEMO_METHODS, run_demo

    console.print("[bold]tokenprune demo[/bold]: LLaVA-1.5-shaped model built in code with random weights "
                  f"(576 visual tokens/image, LM {DEMO_GEOMETRY}); batch of 2 prompts, one image each.")
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task("timing dense and pruned prefill", total=len(DEMO_METHODS))
        rows = run_demo(repeats=args.repeats, new_tokens=args.new_tokens, progress=lambda: prog.advance(task))
    t = Table(title="Dense vs pruned (median prefill of the batch, CPU)")
    for col in ("method", "visual tokens kept", "prefill ms", "speedup", "LM FLOPs ratio", "greedy tokens (sample 0)",
                "batch = dense?"):
        t.add_column(col)
    for r in rows:
        t.add_row(r.method, str(r.visual_tokens), f"{r.prefill_ms:.1f}", f"{r.speedup:.2f}x", f"{r.flops_ratio:.3f}",
                  " ".join(map(str, r.tokens[:6])), "yes" if r.same_as_dense else "no")
    console.print(t)
    console.print("Random weights: the continuations show that generate() runs end to end, not answer quality.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokenprune", description="Visual-token pruning for HF VLMs")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="list adapters, presets, scorers")
    d = sub.add_parser("demo", help="dense vs pruned on a model built in code")
    d.add_argument("--repeats", type=int, default=3, help="timed prefill repeats (median)")
    d.add_argument("--new-tokens", type=int, default=8, help="greedy tokens generated per method")
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=130)
    try:
        if getattr(args, "repeats", 1) < 1 or getattr(args, "new_tokens", 1) < 1:
            raise TokenPruneError("--repeats and --new-tokens must be >= 1")
        return {"info": _info, "demo": _demo}[args.cmd](args, console)
    except TokenPruneError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
