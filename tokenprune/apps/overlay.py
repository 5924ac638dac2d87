"""Pictures of what a pruning stage kept: an image with pruned tokens dimmed, a clip as a strip of frames."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def overlay(image: Any, kept: Sequence[int], grid: int | tuple[int, int] = 24, offset: int = 0) -> Any:
    """``image`` (PIL or ``[H, W, 3]`` uint8) with the tokens not in ``kept`` dimmed; ``grid``: the token grid
    (rows, cols) — or its side — laid over the image; ``offset``: the index of the grid's first token."""
    from PIL import Image, ImageDraw

    img = (image if hasattr(image, "convert") else Image.fromarray(np.asarray(image))).convert("RGB")
    rows, cols = (grid, grid) if isinstance(grid, int) else grid
    w, h = img.size
    dim = Image.blend(img, Image.new("RGB", img.size, (20, 20, 20)), 0.75)
    mask = Image.new("L", img.size, 0)
    draw = ImageDraw.Draw(mask)
    pw, ph = w / cols, h / rows
    n = 0
    for i in kept:
        if not offset <= i < offset + rows * cols:
            continue
        r, c = divmod(i - offset, cols)
        draw.rectangle((c * pw, r * ph, (c + 1) * pw - 1, (r + 1) * ph - 1), fill=255)
        n += 1
    out = Image.composite(img, dim, mask)
    ImageDraw.Draw(out).text((4, 4), f"{n}/{rows * cols} kept", fill=(255, 255, 255))
    return out


def strip(frames: np.ndarray, kept: Sequence[int], grid: tuple[int, int, int], frames_per_step: int = 2) -> Any:
    """A clip's kept tokens as one row of pictures: for each temporal step of the token grid ``(t, rows, cols)``,
    its first frame with that step's tokens (indices ``step·rows·cols ..``) shown kept."""
    from PIL import Image

    t, rows, cols = grid
    tiles = [overlay(frames[min(s * frames_per_step, len(frames) - 1)], kept, (rows, cols), s * rows * cols)
             for s in range(t)]
    out = Image.new("RGB", (sum(p.size[0] for p in tiles) + 4 * (t - 1), tiles[0].size[1]), (255, 255, 255))
    x = 0
    for p in tiles:
        out.paste(p, (x, 0))
        x += p.size[0] + 4
    return out


def save_gif(frames: np.ndarray, kept: Sequence[int], grid: tuple[int, int, int], path: str,
             frames_per_step: int = 2, ms_per_frame: int = 250) -> str:
    """Every frame of a clip with the kept tokens of its temporal step shown (the rest dimmed), as a looping GIF."""
    t, rows, cols = grid
    pics = [overlay(f, kept, (rows, cols), min(i // frames_per_step, t - 1) * rows * cols)
            for i, f in enumerate(frames)]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=ms_per_frame, loop=0)
    return path
