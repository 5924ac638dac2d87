"""ShapesVQA scenes: seeded shapes on a textured, cluttered 336×336 canvas, with per-patch labels.

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

    def at(self, cell: int) -> Obj | None:
        return next((o for o in self.objects if o.cell == cell), None)


def make_scene(seed: int) -> Scene:
    """The scene for ``seed`` (deterministic: the same seed always gives the same objects)."""
    rng = random.Random(seed)
    n = rng.randint(2, 7)
    cells = rng.sample(range(GRID * GRID), n)
    objs = []
    for cell in sorted(cells):
        size = rng.uniform(44, 84)
        slack = (CELL - size) / 2 - 3
        r, c = divmod(cell, GRID)
        cx = c * CELL + CELL / 2 + rng.uniform(-slack, slack)
        cy = r * CELL + CELL / 2 + rng.uniform(-slack, slack)
        objs.append(Obj(cell, rng.choice(list(COLOURS)), rng.choice(SHAPES), cx, cy, size))
    grey = rng.randint(150, 215)
    bg = (grey + rng.randint(-12, 12), grey + rng.randint(-12, 12), grey + rng.randint(-12, 12))
    return Scene(seed, tuple(objs), bg)


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


def render(scene: Scene) -> tuple[Image.Image, np.ndarray]:
    """The RGB image and a uint8 label map (0 = background, i + 1 = ``scene.objects[i]``)."""
    rng = np.random.default_rng(scene.seed)
    base = np.empty((SIZE, SIZE, 3), dtype=np.float32)
    base[:] = scene.background
    # texture: smooth low-frequency shading plus per-pixel noise (grey only, so it never looks like a colour)
    coarse = rng.normal(0, 10, (8, 8)).astype(np.float32)
    shade = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.BILINEAR))
    base += shade[..., None] + rng.normal(0, 6, (SIZE, SIZE, 1)).astype(np.float32)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    prng = random.Random(scene.seed ^ 0x5EED)
    for _ in range(prng.randint(12, 30)):  # clutter: thin grey strokes and specks
        g = prng.randint(60, 250)
        x, y = prng.uniform(0, SIZE), prng.uniform(0, SIZE)
        if prng.random() < 0.5:
            draw.line((x, y, x + prng.uniform(-40, 40), y + prng.uniform(-40, 40)), fill=(g, g, g), width=prng.randint(1, 2))
        else:
            r = prng.uniform(1.5, 4)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(g, g, g))
    labels = Image.new("L", (SIZE, SIZE), 0)
    ldraw = ImageDraw.Draw(labels)
    for i, o in enumerate(scene.objects):
        rgb = tuple(int(np.clip(v + prng.randint(-18, 18), 0, 255)) for v in COLOURS[o.colour])
        _draw(draw, o, rgb)
        _draw(ldraw, o, i + 1)
    return img, np.asarray(labels)


def patch_labels(scene: Scene, label_map: np.ndarray) -> dict[str, np.ndarray]:
    """Per-patch targets on the 24×24 grid (row-major, 576 entries): colour (0 = background, 1..6), shape
    (0 = background, 1..4), cell (0..8), centre (1 where the patch holds an object's centre) and object
    (0 = background, i + 1 = ``scene.objects[i]``)."""
    n = SIZE // PATCH
    centres = label_map[PATCH // 2::PATCH, PATCH // 2::PATCH][:n, :n].reshape(-1)
    colour_ids = np.array([0] + [list(COLOURS).index(o.colour) + 1 for o in scene.objects])
    shape_ids = np.array([0] + [SHAPES.index(o.shape) + 1 for o in scene.objects])
    rows, cols = np.divmod(np.arange(n * n), n)
    cell = (rows // (n // GRID)) * GRID + cols // (n // GRID)
    centre = np.zeros(n * n, dtype=np.int64)
    for o in scene.objects:
        centre[int(o.cy // PATCH) * n + int(o.cx // PATCH)] = 1
    return {"colour": colour_ids[centres], "shape": shape_ids[centres], "cell": cell, "centre": centre,
            "object": centres.astype(np.int64)}
