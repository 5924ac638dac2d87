"""ShapesVQA (LLaVA) prompts whose image starts at successive offsets, shared by the vLLM runner and the HF reference."""
from __future__ import annotations


def sweep_pairs(n: int, start: int = 0):
    """(text, image) for test examples ``start..start+n-1``; prompt ``k`` has ``k`` filler words before the image, so
    the image starts at token index 2 + k (``USER :`` first)."""
    from tokenprune.shapesvqa.data import examples

    out = []
    for k, e in enumerate(examples("test", n, start=start)):
        text = " ".join(f"USER : {' '.join(['the'] * k)} <image> {e.qa.question} ASSISTANT :".split())
        out.append((text, e.image()))
    return out
