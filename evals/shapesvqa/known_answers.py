"""Records test samples the exported model answers correctly with a clear margin (for the shipped-model test).

    python -m evals.shapesvqa.known_answers [--model tokenprune/assets/shapesvqa] [--n 16] [--margin 2.0]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tokenprune.shapesvqa import model as M
from tokenprune.shapesvqa.data import examples


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(M.EMBEDDED_DIR))
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--margin", type=float, default=2.0, help="top-1 minus top-2 logit")
    args = ap.parse_args(argv)
    model, proc = M.load(args.model)
    proc.tokenizer.padding_side = "left"
    known, kinds = [], {"localized": 0, "global": 0}
    for start in range(0, 400, 16):
        exs = examples("test", 16, start=start)
        x = proc(images=[e.image() for e in exs], text=[M.prompt(proc, e.qa.question) for e in exs],
                 return_tensors="pt", padding=True)
        with torch.no_grad():
            top = model(**x).logits[:, -1].float().topk(2, -1)
        words = proc.tokenizer.convert_ids_to_tokens(top.indices[:, 0].tolist())
        for e, w, v in zip(exs, words, top.values):
            ok = w == e.qa.answer and (v[0] - v[1]).item() >= args.margin
            if ok and kinds[e.qa.kind] < args.n // 2:
                kinds[e.qa.kind] += 1
                known.append({"index": e.index, "type": e.qa.type, "question": e.qa.question, "answer": w,
                              "margin": round((v[0] - v[1]).item(), 3)})
        if len(known) >= args.n:
            break
    path = Path(args.model) / "known_answers.json"
    path.write_text(json.dumps(sorted(known, key=lambda k: k["index"]), indent=1))
    print(f"{len(known)} known answers -> {path}")


if __name__ == "__main__":
    main()
