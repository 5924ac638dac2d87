"""ShapesVQA scenes: seeded shapes on a textured, cluttered canvas (336×336 unless a size is given), with per-patch
labels.

A scene places 2–7 shapes in distinct cells of a 3×3 grid (jittered inside the cell, varied size and tint). The
same drawing is rendered into a label map, from which each 14-px patch gets its object's colour, shape and cell —
the auxiliary targets the training script uses to ground the model's answers in the right patches.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 336
PATCH = 14
GRID = 3
CELL = SIZE // GRID
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (235, 210, 40), "purple": (150, 60, 190), "orange": (245, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")
CELLS = ("top-left", "top", "top-right", "left", "centre", "right", "bottom-left", "bottom", "bottom-right")


@dataclass(frozen=True)
class Obj:
    """One shape: its cell (0..8, row-major), colour and shape names, centre (x, y) and size in pixels."""
    cell: int
    colour: str
    shape: str
    cx: float
    cy: float
    size: float


@dataclass(frozen=True)
class Scene:
    seed: int
    objects: tuple[Obj, ...]
    background: tuple[int, int, int]
    width: int = SIZE
    height: int = SIZE

    def at(self, cell: int) -> Obj | None:
        return next((o for o in self.objects if o.cell == cell), None)


def make_scene(seed: int, width: int = SIZE, height: int = SIZE, max_objects: int = 7) -> Scene:
    """The scene for ``seed`` (deterministic: the same seed always gives the same objects) on a ``width`` ×
    ``height`` canvas; shapes scale with the smaller cell side (the 336×336 default draws exactly as it always has)."""
    rng = random.Random(seed)
    n = rng.randint(2, max_objects)
    cells = rng.sample(range(GRID * GRID), n)
    cw, ch = width / GRID, height / GRID
    scale = min(cw, ch) / CELL
    objs = []
    for cell in sorted(cells):
        size = rng.uniform(44, 84) * scale
        sx, sy = (cw - size) / 2 - 3 * scale, (ch - size) / 2 - 3 * scale
        r, c = divmod(cell, GRID)
        cx = c * cw + cw / 2 + rng.uniform(-sx, sx)
        cy = r * ch + ch / 2 + rng.uniform(-sy, sy)
        objs.append(Obj(cell, rng.choice(list(COLOURS)), rng.choice(SHAPES), cx, cy, size))
    grey = rng.randint(150, 215)
    bg = (grey + rng.randint(-12, 12), grey + rng.randint(-12, 12), grey + rng.randint(-12, 12))
    return Scene(seed, tuple(objs), bg, width, height)


def _outline(o: Obj) -> tuple[str, list[tuple[float, float]] | tuple[float, float, float, float]]:
    h = o.size / 2
    if o.shape == "circle":
        return "ellipse", (o.cx - h, o.cy - h, o.cx + h, o.cy + h)
    if o.shape == "square":
        s = h * 0.88
        return "rect", (o.cx - s, o.cy - s, o.cx + s, o.cy + s)
    if o.shape == "triangle":
        return "poly", [(o.cx, o.cy - h), (o.cx + h, o.cy + h * 0.8), (o.cx - h, o.cy + h * 0.8)]
    return "poly", [(o.cx, o.cy - h), (o.cx + h, o.cy), (o.cx, o.cy + h), (o.cx - h, o.cy)]


def _draw(draw: ImageDraw.ImageDraw, o: Obj, fill) -> None:
    kind, geom = _outline(o)
    {"ellipse": draw.ellipse, "rect": draw.rectangle, "poly": draw.polygon}[kind](geom, fill=fill)


def background(seed: int, colour: tuple[int, int, int], width: int = SIZE, height: int = SIZE) -> np.ndarray:
    """The textured canvas (float32 ``[H, W, 3]``): smooth low-frequency shading plus per-pixel noise, grey only so
    it never looks like a colour."""
    rng = np.random.default_rng(seed)
    base = np.empty((height, width, 3), dtype=np.float32)
    base[:] = colour
    coarse = rng.normal(0, 10, (8, 8)).astype(np.float32)
    shade = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
    base += shade[..., None] + rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    return base


def clutter(draw: ImageDraw.ImageDraw, prng: random.Random, width: int, height: int, dx: float = 0.0,
            dy: float = 0.0) -> None:
    """Thin grey strokes and specks (shifted by ``dx, dy``: the distractor motion of clips)."""
    for _ in range(prng.randint(12, 30)):
        g = prng.randint(60, 250)
        x, y = (prng.uniform(0, width) + dx) % width, (prng.uniform(0, height) + dy) % height
        if prng.random() < 0.5:
            draw.line((x, y, x + prng.uniform(-40, 40), y + prng.uniform(-40, 40)), fill=(g, g, g), width=prng.randint(1, 2))
        else:
            r = prng.uniform(1.5, 4)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(g, g, g))


def render(scene: Scene) -> tuple[Image.Image, np.ndarray]:
    """The RGB image and a uint8 label map (0 = background, i + 1 = ``scene.objects[i]``)."""
    w, h = scene.width, scene.height
    base = background(scene.seed, scene.background, w, h)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    prng = random.Random(scene.seed ^ 0x5EED)
    clutter(draw, prng, w, h)
    labels = Image.new("L", (w, h), 0)
    ldraw = ImageDraw.Draw(labels)
    for i, o in enumerate(scene.objects):
        rgb = tuple(int(np.clip(v + prng.randint(-18, 18), 0, 255)) for v in COLOURS[o.colour])
        _draw(draw, o, rgb)
        _draw(ldraw, o, i + 1)
    return img, np.asarray(labels)


def patch_labels(scene: Scene, label_map: np.ndarray, patch: int = PATCH) -> dict[str, np.ndarray]:
    """Per-patch targets on the ``patch``-pixel grid (row-major; 24×24 = 576 entries for the default scene): colour
    (0 = background, 1..6), shape (0 = background, 1..4), cell (0..8), centre (1 where the patch holds an object's
    centre) and object (0 = background, i + 1 = ``scene.objects[i]``), each read at the patch's centre pixel."""
    nr, nc = label_map.shape[0] // patch, label_map.shape[1] // patch
    centres = label_map[patch // 2::patch, patch // 2::patch][:nr, :nc].reshape(-1)
    colour_ids = np.array([0] + [list(COLOURS).index(o.colour) + 1 for o in scene.objects])
    shape_ids = np.array([0] + [SHAPES.index(o.shape) + 1 for o in scene.objects])
    rows, cols = np.divmod(np.arange(nr * nc), nc)
    ch, cw = label_map.shape[0] / GRID, label_map.shape[1] / GRID
    cell = np.minimum((rows * patch + patch // 2) // ch, GRID - 1) * GRID + np.minimum((cols * patch + patch // 2) // cw, GRID - 1)
    cell = cell.astype(np.int64)
    centre = np.zeros(nr * nc, dtype=np.int64)
    for o in scene.objects:
        centre[min(int(o.cy // patch), nr - 1) * nc + min(int(o.cx // patch), nc - 1)] = 1
    return {"colour": colour_ids[centres], "shape": shape_ids[centres], "cell": cell, "centre": centre,
            "object": centres.astype(np.int64)}
