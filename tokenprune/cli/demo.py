"""``tokenprune demo``: the embedded ShapesVQA model (or a random-weight one) dense vs pruned."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="dense vs pruned on a model built in code")
    d.add_argument("--repeats", type=int, default=3, help="timed prefill repeats (median)")
    d.add_argument("--new-tokens", type=int, default=8, help="greedy tokens generated per method (--random)")
    d.add_argument("--samples", type=int, default=8, help="test questions answered (embedded model)")
    d.add_argument("--out-dir", default="demo_out", help="PNGs of the kept patches go here ('' to skip)")
    d.add_argument("--model", choices=["embedded", "embedded-qwen"], default="embedded",
                   help="the shipped LLaVA-1.5-architecture model, or the Qwen2-VL-architecture one")
    d.add_argument("--video", action="store_true", help="8-frame clips instead of images (--model embedded-qwen)")
    d.add_argument("--random", action="store_true", help="time the random-weight LLaVA-1.5-shaped model instead")


def run(args: argparse.Namespace, console: Console) -> int:
    from ..apps.demo import has_embedded
    from ..errors import InputError

    if args.video and args.model != "embedded-qwen":
        raise InputError("--video: clips need --model embedded-qwen (the LLaVA-1.5 model takes no video)")
    if args.model == "embedded-qwen" and not has_embedded(args.model):
        raise InputError("--model: the embedded Qwen checkpoint is missing from this install")
    if has_embedded(args.model) and not args.random:
        return _embedded(args, console)
    return _random(args, console)


def _embedded(args: argparse.Namespace, console: Console) -> int:
    from rich.markup import escape
    from rich.progress import Progress

    from ..apps.demo import default_methods, run_embedded_demo
    from ..shapesvqa.clip_data import clip_examples
    from ..shapesvqa.data import examples

    exs = clip_examples("clips-test", args.samples) if args.video else examples("test", args.samples)
    what = ("Qwen2-VL architecture: native-resolution 14-px tower, 2x2 merger, M-RoPE; "
            + ("8-frame clips -> 324 visual tokens each" if args.video else "images at 5 sizes -> 126-160 tokens")
            if args.model == "embedded-qwen" else "LLaVA-1.5 architecture, 336/14 tower -> 576 visual tokens per image")
    console.print(f"[bold]tokenprune demo[/bold]: the embedded ShapesVQA model ({what}) answers {len(exs)} test "
                  "questions, densely and pruned.")
    for i, e in enumerate(exs):
        console.print(escape(f"  q{i}: [{e.qa.kind}] {e.qa.question}  (answer: {e.qa.answer})"))
    methods = default_methods(args.model, args.video)
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task("running dense and pruned", total=len(methods))
        rows = run_embedded_demo(repeats=args.repeats, out_dir=args.out_dir, samples=args.samples,
                                 progress=lambda: prog.advance(task), model_name=args.model, video=args.video)
    t = Table(title=f"Dense vs pruned: batch of {len(exs)} (median prefill of the batch, {args.repeats} runs)")
    for col in ("method", "visual tokens kept", "prefill ms", "speedup", "LM FLOPs", "answers q0..", "correct"):
        t.add_column(col, no_wrap=col == "method")
    for r in rows:
        t.add_row(r.method, str(r.visual_tokens), f"{r.prefill_ms:.1f}", f"{r.speedup:.2f}x", f"{r.flops_ratio:.3f}",
                  " ".join(r.answers[:4]) + (" .." if len(r.answers) > 4 else ""), f"{r.correct}/{len(r.answers)}")
    console.print(t)
    if args.out_dir:
        first = "clip (one tile per temporal step)" if args.video else "image"
        console.print(f"kept tokens of the first {first}, one PNG per method: {args.out_dir}/")
    return 0


def _random(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    from ..apps.demo import DEMO_GEOMETRY, DEMO_METHODS, run_demo

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
