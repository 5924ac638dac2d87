"""Tiny Qwen2-VL / Qwen2.5-VL folders for vLLM (random weights, head_dim 32) with an offline processor, and the
prompts both the vLLM runner and the Hugging Face reference use."""
from __future__ import annotations

from pathlib import Path

WORDS = ["USER", "ASSISTANT", ":", "describe", "the", "image", "what", "is", "left", "of", "."]
QUESTIONS = ["describe the image .", "what is left of the image .", "describe the image", "what is the image ."]
FILLER = ["describe", "the", "image", "."]
SIZES = [(112, 112), (84, 112), None, (112, 56)]  # (h, w) pixels → 16, 12, (text only), 8 LLM tokens


def make_processor(family: str):
    from tokenprune.testing.tiny import make_qwen_processor

    return make_qwen_processor(WORDS, family)


def save_model(family: str, path: Path) -> Path:
    from tokenprune.testing.tiny import make_model

    model = make_model(family, hidden=128, heads=4, kv_heads=2, inter=256, seed=0)
    model.save_pretrained(path)
    make_processor(family).save_pretrained(path)
    return path


def prompts(n: int, long: bool = False):
    """(text, PIL image or None) pairs: one image per prompt, sizes that give different token counts, and a
    text-only prompt; ``long``: 32 more words after the image (so that a 32-token prefix-cache block covers it)."""
    import numpy as np
    from PIL import Image

    out = []
    for i in range(n):
        size = SIZES[i % len(SIZES)]
        q = QUESTIONS[i % len(QUESTIONS)]
        if long:
            q = " ".join(["what is left of the image ."] * 4 + [q])
        if size is None:
            out.append((f"USER : {q} ASSISTANT :", None))
            continue
        img = Image.fromarray(np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8))
        out.append((f"USER : <|vision_start|><|image_pad|><|vision_end|> {q} ASSISTANT :", img))
    return out


def sweep_prompts(offsets: int, seed: int = 0):
    """(text, image) pairs whose ``<|vision_start|>`` sits at token index 2, 3, ..., 2 + offsets - 1 (``USER :``
    then filler words): every offset of a chunk or of a prefix-cache block. ``seed`` picks the images."""
    import numpy as np
    from PIL import Image

    out = []
    for k in range(offsets):
        img = Image.fromarray(np.random.default_rng(100 + seed * 1000 + k).integers(0, 255, (112, 112, 3),
                                                                                    dtype=np.uint8))
        filler = " ".join(FILLER[i % len(FILLER)] for i in range(k))
        text = f"USER : {filler} <|vision_start|><|image_pad|><|vision_end|> what is the image . ASSISTANT :"
        out.append((" ".join(text.split()), img))
    return out


def video_prompts(n: int):
    """(text, frames ``[T, H, W, 3]`` uint8) pairs: videos of 4 / 6 frames (2 / 3 temporal patches of 4 × 4 LLM
    tokens), seeded noise with a moving bright square so frames differ."""
    import numpy as np

    out = []
    for i in range(n):
        t = (4, 6)[i % 2]
        frames = np.random.default_rng(200 + i).integers(0, 120, (t, 112, 112, 3), dtype=np.uint8)
        for f in range(t):
            frames[f, 10 + 12 * f:40 + 12 * f, 20:50] = 250
        q = QUESTIONS[i % len(QUESTIONS)]
        out.append((f"USER : <|vision_start|><|video_pad|><|vision_end|> {q} ASSISTANT :", frames))
    return out
