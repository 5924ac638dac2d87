"""Records test samples the exported model answers correctly with a clear margin (for the shipped-model tests).

    python -m evals.shapesvqa.known_answers [--model tokenprune/assets/shapesvqa] [--n 16] [--margin 2.0]
    python -m evals.shapesvqa.known_answers --model tokenprune/assets/shapesvqa_qwen   # images and clips

Per model family: the LLaVA model's test images; the Qwen2-VL model's test images (its several sizes) and
``clips-test`` clips, each balanced over the question kinds.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

import torch

from tokenprune.shapesvqa import embedded as E
from tokenprune.shapesvqa import model as M


def _record(split: str, kinds: list[str], n: int, margin: float, logits_of: Callable[[list], torch.Tensor],
            words_of: Callable[[list[int]], list[str]], proc: Any) -> list[dict]:
    known: list[dict] = []
    count = dict.fromkeys(kinds, 0)
    for start in range(0, 400, 16):
        exs = E.split_examples(proc, split, 16, start)
        top = logits_of(exs).float().topk(2, -1)
        for e, w, v in zip(exs, words_of(top.indices[:, 0].tolist()), top.values):
            gap = (v[0] - v[1]).item()
            if w == e.qa.answer and gap >= margin and count[e.qa.kind] < n // len(kinds):
                count[e.qa.kind] += 1
                known.append({"index": e.index, "type": e.qa.type, "question": e.qa.question, "answer": w,
                              "margin": round(gap, 3)})
        if len(known) >= n // len(kinds) * len(kinds):
            break
    return sorted(known, key=lambda k: k["index"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(M.EMBEDDED_DIR))
    ap.add_argument("--n", type=int, default=16, help="samples per split, balanced over the question kinds")
    ap.add_argument("--margin", type=float, default=2.0, help="top-1 minus top-2 logit")
    args = ap.parse_args(argv)
    model, proc = E.load(args.model)
    words = proc.tokenizer.convert_ids_to_tokens
    path = Path(args.model) / "known_answers.json"
    with torch.no_grad():
        if E.family(args.model) == "llava":
            proc.tokenizer.padding_side = "left"

            def llava_logits(exs: list) -> torch.Tensor:
                x = proc(images=[e.image() for e in exs], text=[M.prompt(proc, e.qa.question) for e in exs],
                         return_tensors="pt", padding=True)
                return model(**x).logits[:, -1]
            known: Any = _record("test", ["localized", "global"], args.n, args.margin, llava_logits, words, proc)
        else:
            def qwen_logits(exs: list) -> torch.Tensor:
                return model(**E.batch_inputs(proc, exs)).logits[:, -1]
            known = {"test": _record("test", ["localized", "global"], args.n, args.margin, qwen_logits, words, proc),
                     "clips-test": _record("clips-test", ["temporal", "localized", "global"], args.n, args.margin,
                                           qwen_logits, words, proc)}
    path.write_text(json.dumps(known, indent=1))
    print(f"known answers -> {path}")


if __name__ == "__main__":
    main()
