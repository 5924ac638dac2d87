"""Accuracy of a ShapesVQA Qwen2-VL model folder per question kind and type, on images (sizes cycled) or clips.

    python -m evals.shapesvqa.per_type --model tokenprune/assets/shapesvqa_qwen --split val --n 1000
    python -m evals.shapesvqa.per_type --model DIR --split clips-val --n 384

Used to choose among training states on more questions than the training-time evaluation uses (see
docs/shapesvqa_qwen.md); ``--snapshot`` reads a ``train_qwen --snapshots`` state file into the model folder's
architecture instead of the folder's weights.
"""
from __future__ import annotations

import argparse
import collections
import json

import torch

from tokenprune.shapesvqa import qwen as Q
from tokenprune.shapesvqa.clip_data import CLIP_SPLITS, clip_examples
from tokenprune.shapesvqa.data import examples


def per_type(model, processor, split: str, n: int, batch: int = 16) -> dict[str, float]:
    """``{kind or type: accuracy}`` over the first ``n`` examples of ``split`` (image or clip split)."""
    clips = split in CLIP_SPLITS
    exs = clip_examples(split, n) if clips else examples(split, n, sizes=list(Q.IMAGE_SIZES))
    hits: dict[str, list[bool]] = collections.defaultdict(list)
    for i in range(0, n, batch):
        chunk = exs[i:i + batch]
        qs = [e.qa.question for e in chunk]
        preds = (Q.answer(model, processor, qs, videos=[e.frames() for e in chunk]) if clips else
                 Q.answer(model, processor, qs, images=[e.image() for e in chunk]))
        for e, p in zip(chunk, preds):
            for key in ("all", e.qa.kind, e.qa.type):
                hits[key].append(p == e.qa.answer)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tokenprune/assets/shapesvqa_qwen")
    ap.add_argument("--snapshot", default=None, help="a train_qwen --snapshots file (weights only)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(args.model).eval()
    if args.snapshot:
        model.load_state_dict(torch.load(args.snapshot, map_location="cpu")["model"])
    print(json.dumps({k: round(v, 4) for k, v in per_type(model, Q.make_processor(), args.split, args.n).items()}))


if __name__ == "__main__":
    main()
