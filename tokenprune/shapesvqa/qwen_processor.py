"""A Qwen2-VL processor for the embedded Qwen ShapesVQA model that needs no torchvision.

transformers' ``Qwen2VLProcessor`` cannot be built without its video processor, which imports torchvision — and
PyPI's torchvision does not import next to the CPU torch this project pins (DESIGN §7). This class does the same
job for images (transformers' PIL image processor) and clips (frames normalised the same way and patchified in the
layout of ``Qwen2VLVideoProcessor``: ``[t, h/2, w/2, 2, 2, C, 2, 14, 14]`` rows), and saves a folder that stock
``AutoProcessor`` also loads where torchvision is present (vLLM, lmms-eval environments).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

PATCH, MERGE, TEMPORAL = 14, 2, 2


def video_pixels(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, list[int]]:
    """``[T, H, W, 3]`` uint8 frames (H, W multiples of 28; T even, else the last frame is repeated) → flattened
    patches ``[t·h·w, 3·2·14·14]`` and the grid ``[t, h, w]`` (in 14-px patches)."""
    x = np.asarray(frames, dtype=np.float32) / 255.0
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames: expected [T, H, W, 3], got {x.shape}")
    if x.shape[1] % (PATCH * MERGE) or x.shape[2] % (PATCH * MERGE):
        raise ValueError(f"frames: height and width must be multiples of {PATCH * MERGE}, got {x.shape[1:3]}")
    if x.shape[0] % TEMPORAL:
        x = np.concatenate([x, x[-1:].repeat(TEMPORAL - x.shape[0] % TEMPORAL, 0)])
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    x = x.transpose(0, 3, 1, 2)  # T, C, H, W
    t, c, h, w = x.shape
    gt, gh, gw = t // TEMPORAL, h // PATCH, w // PATCH
    x = x.reshape(gt, TEMPORAL, c, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(x.reshape(gt * gh * gw, c * TEMPORAL * PATCH * PATCH)), [gt, gh, gw]


class QwenShapesProcessor:
    """``processor(text=[...], images=[...] | videos=[...], padding=True, return_tensors="pt")`` → the inputs of
    ``Qwen2VLForConditionalGeneration`` (``pixel_values``/``image_grid_thw`` or ``pixel_values_videos``/
    ``video_grid_thw``), with each ``<|image_pad|>`` / ``<|video_pad|>`` expanded to its item's token count."""

    def __init__(self, image_processor: Any, tokenizer: Any, chat_template: str) -> None:
        self.image_processor, self.tokenizer, self.chat_template = image_processor, tokenizer, chat_template

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = False, **kw: Any) -> str:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt, **kw)

    def _expand(self, texts: list[str], token: str, counts: list[int]) -> list[str]:
        counts = list(counts)
        out = []
        for text in texts:
            parts = text.split(token)
            if len(parts) - 1 > len(counts):
                raise ValueError(f"more {token} placeholders in the text than media items given")
            s = parts[0]
            for p in parts[1:]:
                s += token * counts.pop(0) + p
            out.append(s)
        if counts:
            raise ValueError(f"{len(counts)} media item(s) given without a {token} placeholder in the text")
        return out

    def __call__(self, text: str | list[str], images: Sequence | None = None, videos: Sequence | None = None,
                 padding: bool | str = True, return_tensors: str = "pt", **_: Any) -> Any:
        from transformers import BatchFeature

        texts = [text] if isinstance(text, str) else list(text)
        data: dict[str, Any] = {}
        if images is not None and len(images):
            px = self.image_processor(images=list(images), return_tensors="pt")
            data.update(pixel_values=px["pixel_values"], image_grid_thw=px["image_grid_thw"])
            texts = self._expand(texts, "<|image_pad|>", (px["image_grid_thw"].prod(-1) // MERGE ** 2).tolist())
        if videos is not None and len(videos):
            mean, std = self.image_processor.image_mean, self.image_processor.image_std
            out = [video_pixels(np.asarray(v), mean, std) for v in videos]
            data["pixel_values_videos"] = torch.from_numpy(np.concatenate([p for p, _ in out]))
            data["video_grid_thw"] = torch.tensor([g for _, g in out])
            texts = self._expand(texts, "<|video_pad|>", [int(np.prod(g)) // MERGE ** 2 for _, g in out])
        tok = self.tokenizer(texts, padding=padding, return_tensors=return_tensors)
        ids = tok["input_ids"]
        image_id, video_id = self.tokenizer.convert_tokens_to_ids(["<|image_pad|>", "<|video_pad|>"])
        # M-RoPE needs each token's modality (0 text, 1 image, 2 video), as stock processors return it
        data["mm_token_type_ids"] = (ids == image_id).long() + 2 * (ids == video_id).long()
        return BatchFeature({**tok, **data})

    def batch_decode(self, *args: Any, **kw: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kw)

    def decode(self, *args: Any, **kw: Any) -> str:
        return self.tokenizer.decode(*args, **kw)

    def save_pretrained(self, path: str | Path) -> None:
        """Tokenizer, image processor, chat template, and the configs stock ``Qwen2VLProcessor`` reads."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)
        (path / "chat_template.jinja").write_text(self.chat_template)
        ip = self.image_processor
        video = {"video_processor_type": "Qwen2VLVideoProcessor", "processor_class": "Qwen2VLProcessor",
                 "do_sample_frames": False, "size": dict(ip.size),
                 "patch_size": PATCH, "merge_size": MERGE, "temporal_patch_size": TEMPORAL,
                 "image_mean": list(ip.image_mean), "image_std": list(ip.image_std), "do_rescale": True,
                 "do_normalize": True, "do_resize": True, "do_convert_rgb": True}
        (path / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
        (path / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2VLProcessor"}, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "QwenShapesProcessor":
        from transformers import AutoTokenizer, Qwen2VLImageProcessor

        path = Path(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ip = Qwen2VLImageProcessor.from_pretrained(path, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(ip, tok, (path / "chat_template.jinja").read_text())
