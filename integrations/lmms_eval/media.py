"""Visuals of lmms-eval requests → the family's chat prompt and processor inputs (images and videos).

lmms-eval tasks hand over PIL images, or file paths for videos (``doc_to_visual``). Videos are read with
:func:`tokenprune.video.load_video` (decord, PyAV as fallback) and passed to the processor as ``[T, H, W, 3]`` frames;
a family without video input (its adapter's ``modalities``) is refused with an :class:`InputError` naming it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ...errors import InputError


@dataclass
class Media:
    """One prompt's visuals, in the order the task gave them."""

    images: list[Any] = field(default_factory=list)
    videos: list[Any] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # "image" / "video" per visual


def flatten(visuals: Any) -> list[Any]:
    """A task's visuals (one item, a list, or nested lists) as one flat list."""
    if visuals is None:
        return []
    out: list[Any] = []
    for v in visuals if isinstance(visuals, (list, tuple)) else [visuals]:
        out.extend(v if isinstance(v, (list, tuple)) else [v])
    return out


def collect(visuals: list[Any], modalities: tuple[str, ...], family_name: str, num_frames: int | None = None,
            fps: float | None = None, max_frames: int = 32) -> Media:
    """Sorts ``visuals`` into images and videos (paths are read here)."""
    from ...video import load_video

    media = Media()
    for v in visuals:
        if isinstance(v, (str, bytes)) or hasattr(v, "__fspath__"):
            if "video" not in modalities:
                raise InputError(f"visuals: the task gives a video ({v!r}) but {family_name} takes "
                                 f"{', '.join(modalities)} input only")
            media.videos.append(load_video(v, num_frames=num_frames, fps=fps, max_frames=max_frames).frames)
            media.order.append("video")
        else:
            media.images.append(v)
            media.order.append("image")
    return media


def prompt(processor: Any, context: str, media: Media) -> str:
    """The family's chat template over one user turn: the visuals first, then the text (``<image>`` markers in the
    task's text are dropped: the template places the visuals)."""
    text = context.replace("<image>", "").replace("<video>", "").strip()
    content = [{"type": kind} for kind in media.order] + [{"type": "text", "text": text}]
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)


def encode(processor: Any, prompts: list[str], medias: list[Media], device: torch.device,
           dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Processor inputs for a batch (left padding is set on the tokenizer by the model)."""
    kw: dict[str, Any] = {"text": prompts, "return_tensors": "pt", "padding": True}
    images = [im for m in medias for im in m.images]
    videos = [v for m in medias for v in m.videos]
    if images:
        kw["images"] = images
    if videos:
        kw["videos"] = videos
    inputs = dict(processor(**kw))
    return {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in inputs.items()}
