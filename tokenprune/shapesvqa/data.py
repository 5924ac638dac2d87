"""ShapesVQA splits: examples generated on the fly from seeds, or written to disk as JSONL + PNG."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import InputError
from .questions import KINDS, QA, make_qa
from .scene import Scene, make_scene, render

#: Scene seeds of each split start here; splits never share a scene.
SPLITS = {"train": 0, "val": 10_000_000, "test": 20_000_000}


@dataclass(frozen=True)
class Example:
    split: str
    index: int
    scene: Scene
    qa: QA

    def image(self) -> Image.Image:
        return render(self.scene)[0]

    def to_dict(self) -> dict:
        return {"split": self.split, "index": self.index, "seed": self.scene.seed, **self.qa.to_dict()}


def split_seed(split: str, index: int) -> int:
    if split not in SPLITS:
        raise InputError(f"split: got {split!r}; allowed: {', '.join(SPLITS)}")
    if index < 0:
        raise InputError(f"index: got {index}; allowed: >= 0")
    return SPLITS[split] + index


def example(split: str, index: int, size: tuple[int, int] | None = None) -> Example:
    """Example ``index`` of ``split``: one scene and one question; even indices ask a localized question, odd a
    global one, so any prefix of a split is balanced between the two kinds. ``size`` (width, height) draws the same
    scene on another canvas (same objects, cells and answers; positions scaled)."""
    seed = split_seed(split, index)
    scene = make_scene(seed, *size) if size else make_scene(seed)
    qa = make_qa(scene, random.Random(seed * 7919 + 1), kind=KINDS[index % 2])
    return Example(split, index, scene, qa)


def examples(split: str, n: int, start: int = 0, sizes: list[tuple[int, int]] | None = None) -> list[Example]:
    """Examples ``start..start+n`` of ``split``; ``sizes``: canvas of example i is ``sizes[i % len(sizes)]``."""
    return [example(split, i, sizes[i % len(sizes)] if sizes else None) for i in range(start, start + n)]


def write_split(split: str, n: int, out_dir: str | Path) -> Path:
    """Writes ``n`` examples as ``<out_dir>/<split>.jsonl`` and ``<out_dir>/images/<seed>.png``."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    path = out / f"{split}.jsonl"
    with open(path, "w") as f:
        for ex in examples(split, n):
            name = f"images/{ex.scene.seed}.png"
            ex.image().save(out / name)
            f.write(json.dumps({**ex.to_dict(), "image": name}) + "\n")
    return path
