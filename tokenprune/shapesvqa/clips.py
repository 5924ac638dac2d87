"""ShapesVQA clips: seeded short videos of the ShapesVQA world, with per-frame per-patch labels.

A clip starts from a scene (2–5 shapes in distinct cells of the 3×3 grid on a textured canvas) and adds one to three
events, each on its own shape: one shape **appears** late, one **vanishes**, one **moves** to an adjacent empty
cell (linearly over the whole clip), one **changes colour**. Appear, vanish and colour-change events happen on an
even frame (2, 4 or 6 of 8), i.e. on a boundary of the two-frame temporal patches of Qwen2-VL-style towers. The
clutter of the still scenes drifts a few pixels per frame (distractor motion), so "what changed" is never simply
"any pixel changed".
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from .scene import COLOURS, GRID, PATCH, Obj, Scene, _draw, background, clutter, make_scene, patch_labels

FRAMES = 8
CLIP_SIZE = 252
FPS = 2.0
EVENTS = ("appear", "vanish", "move", "recolour")
EVENT_FRAMES = (2, 4, 6)


@dataclass(frozen=True)
class Track:
    """One shape over the clip: ``obj`` is its state at frame 0 (cell, colour, shape, centre, size); it is visible on
    frames ``start <= t < stop``; a mover goes from ``obj``'s centre to ``to_xy`` (in cell ``to_cell``); a recoloured
    shape has ``new_colour`` from frame ``change`` on."""
    obj: Obj
    start: int = 0
    stop: int = FRAMES
    to_cell: int | None = None
    to_xy: tuple[float, float] | None = None
    new_colour: str | None = None
    change: int | None = None

    def visible(self, t: int) -> bool:
        return self.start <= t < self.stop

    def state(self, t: int, frames: int = FRAMES) -> Obj:
        """The shape as drawn on frame ``t`` (position, cell and colour of that frame)."""
        o = self.obj
        if self.new_colour is not None and t >= self.change:
            o = replace(o, colour=self.new_colour)
        if self.to_xy is not None:
            a = t / (frames - 1)
            cx, cy = o.cx + a * (self.to_xy[0] - o.cx), o.cy + a * (self.to_xy[1] - o.cy)
            o = replace(o, cx=cx, cy=cy, cell=self.to_cell if t == frames - 1 else (o.cell if a < 0.5 else self.to_cell))
        return o


@dataclass(frozen=True)
class Clip:
    seed: int
    tracks: tuple[Track, ...]
    background: tuple[int, int, int]
    width: int = CLIP_SIZE
    height: int = CLIP_SIZE
    frames: int = FRAMES

    def visible(self, t: int) -> list[tuple[int, Obj]]:
        """``(track index, state)`` of every shape visible on frame ``t`` (negative ``t`` counts from the end)."""
        t = t % self.frames
        return [(i, tr.state(t, self.frames)) for i, tr in enumerate(self.tracks) if tr.visible(t)]

    def event(self, kind: str) -> int | None:
        """The index of the track carrying event ``kind`` (one of :data:`EVENTS`), or None."""
        test = {"appear": lambda tr: tr.start > 0, "vanish": lambda tr: tr.stop < self.frames,
                "move": lambda tr: tr.to_cell is not None, "recolour": lambda tr: tr.new_colour is not None}[kind]
        return next((i for i, tr in enumerate(self.tracks) if test(tr)), None)


def _neighbours(cell: int) -> list[int]:
    r, c = divmod(cell, GRID)
    return [rr * GRID + cc for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
            if 0 <= rr < GRID and 0 <= cc < GRID]


def make_clip(seed: int, width: int = CLIP_SIZE, height: int = CLIP_SIZE) -> Clip:
    """The clip for ``seed`` (deterministic)."""
    scene = make_scene(seed, width, height, max_objects=5)
    rng = random.Random(seed * 104729 + 17)
    objs = list(scene.objects)
    occupied = {o.cell for o in objs}
    kinds = rng.sample(EVENTS, rng.randint(1, min(3, len(objs))))
    owners = rng.sample(range(len(objs)), len(kinds))
    tracks = [Track(o) for o in objs]
    cw, ch = width / GRID, height / GRID
    for kind, i in zip(kinds, owners):
        o = objs[i]
        if kind == "appear":
            tracks[i] = replace(tracks[i], start=rng.choice(EVENT_FRAMES))
        elif kind == "vanish":
            tracks[i] = replace(tracks[i], stop=rng.choice(EVENT_FRAMES))
        elif kind == "recolour":
            colour = rng.choice([c for c in COLOURS if c != o.colour])
            tracks[i] = replace(tracks[i], new_colour=colour, change=rng.choice(EVENT_FRAMES))
        else:
            free = [c for c in _neighbours(o.cell) if c not in occupied]
            if not free:
                continue
            to = rng.choice(free)
            occupied.add(to)
            r, c = divmod(to, GRID)
            # the same offset inside the destination cell as inside the start cell
            x = o.cx + (c - o.cell % GRID) * cw
            y = o.cy + (r - o.cell // GRID) * ch
            tracks[i] = replace(tracks[i], to_cell=to, to_xy=(x, y))
    return Clip(seed, tuple(tracks), scene.background, width, height)


def render_clip(clip: Clip) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` (uint8 ``[T, H, W, 3]``) and label maps (uint8 ``[T, H, W]``: 0 = background, i + 1 = track i)."""
    base = np.clip(background(clip.seed, clip.background, clip.width, clip.height), 0, 255).astype(np.uint8)
    tint = random.Random(clip.seed ^ 0xC011)
    tints = [(tint.randint(-18, 18), tint.randint(-18, 18), tint.randint(-18, 18)) for _ in clip.tracks]
    drift = random.Random(clip.seed ^ 0xD21F7)
    vx, vy = drift.uniform(-4, 4), drift.uniform(-4, 4)
    frames, labels = [], []
    for t in range(clip.frames):
        img = Image.fromarray(base)
        draw = ImageDraw.Draw(img)
        clutter(draw, random.Random(clip.seed ^ 0x5EED), clip.width, clip.height, vx * t, vy * t)
        lab = Image.new("L", (clip.width, clip.height), 0)
        ldraw = ImageDraw.Draw(lab)
        for i, o in clip.visible(t):
            rgb = tuple(int(np.clip(v + d, 0, 255)) for v, d in zip(COLOURS[o.colour], tints[i]))
            _draw(draw, o, rgb)
            _draw(ldraw, o, i + 1)
        frames.append(np.asarray(img))
        labels.append(np.asarray(lab))
    return np.stack(frames), np.stack(labels)


def clip_patch_labels(clip: Clip, label_map: np.ndarray, t: int, patch: int = PATCH) -> dict[str, np.ndarray]:
    """Per-patch targets of frame ``t`` (as :func:`~tokenprune.shapesvqa.scene.patch_labels`; colours are the
    frame's, centres only of the shapes visible on it)."""
    states = tuple(tr.state(t, clip.frames) for tr in clip.tracks)
    out = patch_labels(Scene(clip.seed, states, clip.background, clip.width, clip.height), label_map, patch)
    nr, nc = label_map.shape[0] // patch, label_map.shape[1] // patch
    centre = np.zeros(nr * nc, dtype=np.int64)
    for _, o in clip.visible(t):
        centre[min(int(o.cy // patch), nr - 1) * nc + min(int(o.cx // patch), nc - 1)] = 1
    out["centre"] = centre
    return out
