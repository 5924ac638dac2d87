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
        t.add_column(col, no_wrap=col == "method")
    for r in rows:
        t.add_row(r.method, str(r.visual_tokens), f"{r.prefill_ms:.1f}", f"{r.speedup:.2f}x", f"{r.flops_ratio:.3f}",
                  " ".join(map(str, r.tokens[:6])), "yes" if r.same_as_dense else "no")
    console.print(t)
    console.print("Random weights: the continuations show that generate() runs end to end, not answer quality.")
    return 0


def _calibrate(args: argparse.Namespace, console: Console) -> int:
    import os

    from transformers import AutoModelForImageTextToText, AutoProcessor

    from .calibrate import fit_position_trend, load_images, processor_batches, save_calibration
    from .errors import InputError

    if not os.path.isdir(args.model):
        raise InputError(f"model: {args.model!r} is not a model folder (save_pretrained output with its processor)")
    if args.samples < 1:
        raise InputError(f"--samples: got {args.samples}; allowed: >= 1")
    model = AutoModelForImageTextToText.from_pretrained(args.model, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(args.model, local_files_only=True)
    try:
        images = load_images(args.images, args.samples)
    except FileNotFoundError as e:
        raise InputError(str(e)) from e
    with console.status(f"fitting the attention position trend at layer {args.layer} on {len(images)} images"):
        trend = fit_position_trend(model, processor_batches(processor, images), args.layer, args.query)
    save_calibration(trend, args.out)
    console.print(f"slope {trend['slope']:+.4f} (log-attention per image length) over {trend['images']} images "
                  f"-> {args.out}; use Stage(..., scorer='debiased_attention', mode='calibrated', "
                  f"calibration='{args.out}')")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokenprune", description="Visual-token pruning for HF VLMs")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="list adapters, presets, scorers")
    d = sub.add_parser("demo", help="dense vs pruned on a model built in code")
    d.add_argument("--repeats", type=int, default=3, help="timed prefill repeats (median)")
    d.add_argument("--new-tokens", type=int, default=8, help="greedy tokens generated per method")
    c = sub.add_parser("calibrate", help="fit the attention position trend for debiased_attention(mode='calibrated')")
    c.add_argument("model", help="a local model folder (with its processor)")
    c.add_argument("--layer", type=int, default=2, help="LM layer whose attention is debiased")
    c.add_argument("--query", choices=["last", "text"], default="last")
    c.add_argument("--images", default="synthetic", help="a folder of images, or 'synthetic'")
    c.add_argument("--samples", type=int, default=32, help="number of calibration images")
    c.add_argument("--out", default="position_trend.json")
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=130)
    try:
        if getattr(args, "repeats", 1) < 1 or getattr(args, "new_tokens", 1) < 1:
            raise TokenPruneError("--repeats and --new-tokens must be >= 1")
        return {"info": _info, "demo": _demo, "calibrate": _calibrate}[args.cmd](args, console)
    except TokenPruneError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
