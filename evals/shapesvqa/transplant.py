"""Starts the Qwen ShapesVQA model from the shipped LLaVA model's language model (same width, depth and heads).

    python -m evals.shapesvqa.transplant --out runs/qwen_init
    python -m evals.shapesvqa.train_qwen --init runs/qwen_init ...

The two language models differ only in what Qwen2 adds: q/k/v biases (set to zero) and M-RoPE, which equals 1-D RoPE
on text tokens (their three position channels are equal). Word embeddings and output rows are copied word by word
(both tokenizers are word-level over the same ShapesVQA words; clip-only words keep their random rows). The vision
tower and merger stay random: they must learn to produce features the transplanted language model reads, which the
auxiliary per-token heads and attention grounding of ``train_qwen`` steer. What the LLaVA model already knows —
parsing a question, routing it to evidence tokens, the answer vocabulary — is what the Qwen model failed to learn
from scratch in 1800 steps (docs/shapesvqa_qwen.md).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tokenprune.shapesvqa import model as L
from tokenprune.shapesvqa import qwen as Q


@torch.no_grad()
def transplant(out: str | Path, seed: int = 0) -> dict[str, int]:
    """Writes a Qwen ShapesVQA folder with the LLaVA language model; returns copy counts."""
    llava, lproc = L.load("embedded")
    qwen, qproc = Q.make_model(seed=seed), Q.make_processor()
    src, dst = llava.model.language_model, qwen.model.language_model
    copied = 0
    for name, p in dst.named_parameters():
        if name.startswith("embed_tokens"):
            continue
        if name in dict(src.named_parameters()):
            p.copy_(dict(src.named_parameters())[name])
            copied += 1
        elif name.endswith(".bias"):
            p.zero_()
    lv, qv = lproc.tokenizer.get_vocab(), qproc.tokenizer.get_vocab()
    shared = [(qv[w], lv[w]) for w in qv if w in lv]
    qi, li = (torch.tensor(x) for x in zip(*shared))
    dst.embed_tokens.weight[qi] = src.embed_tokens.weight[li]
    qwen.lm_head.weight[qi] = llava.lm_head.weight[li]
    out = Path(out)
    qwen.save_pretrained(out)
    qproc.save_pretrained(out)
    return {"tensors": copied, "words": len(shared), "vocab": len(qv)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(transplant(args.out, args.seed))


if __name__ == "__main__":
    main()
