"""The two ShapesVQA model families behind one interface: which one a name or folder is, loading it, its examples
for a split, and its inputs for a batch.

``embedded`` / a LLaVA folder: the LLaVA-1.5-architecture model (336×336 images, 576 visual tokens, no video).
``embedded-qwen`` / a Qwen2-VL folder: images at several non-square sizes (126–160 visual tokens) and 8-frame clips
(``clips-*`` splits, 324 visual tokens).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from . import model as llava
from . import qwen
from .clip_data import CLIP_SPLITS, clip_examples
from .data import SPLITS, examples

NAMES = {"embedded": llava.EMBEDDED_DIR, "embedded-qwen": qwen.EMBEDDED_QWEN_DIR}


def family(name_or_dir: str | Path) -> str:
    """``"llava"`` or ``"qwen"`` for a ShapesVQA model name or saved folder."""
    path = NAMES.get(str(name_or_dir), Path(name_or_dir))
    cfg = path / "config.json"
    if not cfg.is_file():
        hint = " (the embedded checkpoint is missing from this install)" if str(name_or_dir) in NAMES else ""
        raise InputError(f"model: {str(name_or_dir)!r} is not a saved model folder (no config.json){hint}")
    kind = json.loads(cfg.read_text()).get("model_type")
    if kind == "llava":
        return "llava"
    if kind == "qwen2_vl":
        return "qwen"
    raise InputError(f"model: {str(name_or_dir)!r} is a {kind!r} model; ShapesVQA models are llava or qwen2_vl")


def load(name_or_dir: str | Path, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """The model (eval mode) and its processor."""
    kind, path = family(name_or_dir), NAMES.get(str(name_or_dir), Path(name_or_dir))
    return qwen.load(path, dtype) if kind == "qwen" else llava.load(path, dtype)


def is_qwen(processor: Any) -> bool:
    return isinstance(processor, qwen.QwenShapesProcessor)


def split_examples(processor: Any, split: str, n: int, start: int = 0) -> list:
    """The first ``n`` examples (from ``start``) of an image or clip split, drawn as this model family expects."""
    if split in CLIP_SPLITS:
        if not is_qwen(processor):
            raise InputError(f"split: {split!r} is a clip split; this model (LLaVA-1.5 architecture) takes no video "
                             "(use --model embedded-qwen)")
        return clip_examples(split, n, start)
    if split not in SPLITS:
        raise InputError(f"split: got {split!r}; allowed: {', '.join([*SPLITS, *CLIP_SPLITS])}")
    return examples(split, n, start, sizes=list(qwen.IMAGE_SIZES) if is_qwen(processor) else None)


def batch_inputs(processor: Any, exs: list) -> dict[str, torch.Tensor]:
    """Left-padded inputs for a batch of examples (all images or all clips)."""
    questions = [e.qa.question for e in exs]
    if is_qwen(processor):
        if hasattr(exs[0], "clip"):
            return dict(qwen.inputs(processor, questions, videos=[e.frames() for e in exs]))
        return dict(qwen.inputs(processor, questions, images=[e.image() for e in exs]))
    processor.tokenizer.padding_side = "left"
    return dict(processor(images=[e.image() for e in exs], text=[llava.prompt(processor, q) for q in questions],
                          return_tensors="pt", padding=True))


def visual_tokens(model: Any, inputs: list[dict[str, torch.Tensor]]) -> float:
    """Mean visual tokens per item over prepared batches."""
    ids = [model.config.image_token_id, getattr(model.config, "video_token_id", None)]
    tokens = sum(int(sum((x["input_ids"] == i).sum() for i in ids if i is not None)) for x in inputs)
    items = sum(int(x["input_ids"].shape[0]) for x in inputs)
    return tokens / items
