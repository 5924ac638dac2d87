"""``tokenprune calibrate``: fit the attention position trend for ``debiased_attention(mode="calibrated")``."""
from __future__ import annotations

import argparse

from rich.console import Console

#: library parameter names -> this command's flags (error messages)
FLAGS = {"source": "--images", "samples": "--samples"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("calibrate", help="fit the attention position trend for debiased_attention(mode='calibrated')")
    c.add_argument("model", help="a local model folder (with its processor)")
    c.add_argument("--layer", type=int, default=2, help="LM layer whose attention is debiased")
    c.add_argument("--query", choices=["last", "text"], default="last")
    c.add_argument("--images", default="synthetic", help="a folder of images, or 'synthetic'")
    c.add_argument("--samples", type=int, default=32, help="number of calibration images")
    c.add_argument("--out", default="position_trend.json")


def run(args: argparse.Namespace, console: Console) -> int:
    import os

    from .loading import load_local

    from ..calibrate import fit_position_trend, load_images, processor_batches, save_calibration
    from ..errors import InputError

    if not os.path.isdir(args.model):
        raise InputError(f"model: {args.model!r} is not a model folder (save_pretrained output with its processor)")
    if args.samples < 1:
        raise InputError(f"--samples: got {args.samples}; allowed: >= 1")
    model, processor = load_local(args.model)
    images = load_images(args.images, args.samples)
    with console.status(f"fitting the attention position trend at layer {args.layer} on {len(images)} images"):
        trend = fit_position_trend(model, processor_batches(processor, images), args.layer, args.query)
    save_calibration(trend, args.out)
    console.print(f"slope {trend['slope']:+.4f} (log-attention per image length) over {trend['images']} images "
                  f"-> {args.out}; use Stage(..., scorer='debiased_attention', mode='calibrated', "
                  f"calibration='{args.out}')")
    return 0
