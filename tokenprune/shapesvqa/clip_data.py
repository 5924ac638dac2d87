"""ShapesVQA clip splits: examples generated from seeds, or written to disk as mp4 (PyAV) + JSONL."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .clip_questions import KINDS, make_clip_qa
from .clips import FPS, Clip, make_clip, render_clip
from .questions import QA

#: Clip seeds of each split start here (disjoint from each other and from the image splits).
CLIP_SPLITS = {"clips-train": 30_000_000, "clips-val": 40_000_000, "clips-test": 50_000_000}


@dataclass(frozen=True)
class ClipExample:
    split: str
    index: int
    clip: Clip
    qa: QA

    def frames(self) -> np.ndarray:
        """``[T, H, W, 3]`` uint8 RGB frames."""
        return render_clip(self.clip)[0]

    def to_dict(self) -> dict:
        return {"split": self.split, "index": self.index, "seed": self.clip.seed, **self.qa.to_dict()}


def clip_example(split: str, index: int) -> ClipExample:
    """Example ``index`` of clip split ``split``; kinds rotate temporal, localized, global with the index, so any
    prefix is balanced."""
    if split not in CLIP_SPLITS:
        raise InputError(f"split: got {split!r}; allowed: {', '.join(CLIP_SPLITS)}")
    if index < 0:
        raise InputError(f"index: got {index}; allowed: >= 0")
    seed = CLIP_SPLITS[split] + index
    clip = make_clip(seed)
    qa = make_clip_qa(clip, random.Random(seed * 7919 + 3), kind=KINDS[index % len(KINDS)])
    return ClipExample(split, index, clip, qa)


def clip_examples(split: str, n: int, start: int = 0) -> list[ClipExample]:
    return [clip_example(split, i) for i in range(start, start + n)]


def write_mp4(frames: np.ndarray, path: str | Path, fps: float = FPS) -> Path:
    """Writes ``[T, H, W, 3]`` uint8 frames as an H.264 mp4 (near-lossless: crf 12, yuv444p when the encoder allows)."""
    import fractions

    import av

    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "12"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_clips(split: str, n: int, out_dir: str | Path) -> Path:
    """Writes ``n`` clip examples as ``<out_dir>/<split>.jsonl`` and ``<out_dir>/videos/<seed>.mp4``."""
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    path = out / f"{split}.jsonl"
    with open(path, "w") as f:
        for ex in clip_examples(split, n):
            name = f"videos/{ex.clip.seed}.mp4"
            write_mp4(ex.frames(), out / name)
            f.write(json.dumps({**ex.to_dict(), "video": name, "fps": FPS}) + "\n")
    return path
