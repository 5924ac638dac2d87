"""Questions about ShapesVQA clips, single-word answers, three kinds.

``temporal`` — the answer depends on how the clip unfolds: which shape appears / vanishes / moves, what colour a
shape turns into, in how many frames a colour is present. ``localized`` — one shape at one moment: colour or shape in
a cell at the start or at the end. ``global`` — counts over a whole frame (the first or the last).
"""
from __future__ import annotations

import random

from .clips import Clip
from .questions import QA, vocabulary
from .scene import CELLS, COLOURS

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")

TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "appears": ("temporal", ("which shape appears during the clip ?", "what shape shows up later ?")),
    "appears_colour": ("temporal", ("what colour is the shape that appears ?",)),
    "vanishes": ("temporal", ("which shape disappears ?", "what shape vanishes during the clip ?")),
    "moves": ("temporal", ("which shape moves ?", "what shape is moving ?")),
    "moves_colour": ("temporal", ("what colour is the moving shape ?",)),
    "recolour": ("temporal", ("what colour does the changing shape become ?",
                              "which colour does the shape turn into ?")),
    "frames_colour": ("temporal", ("in how many frames is there a {colour} shape ?",
                                   "count the frames with a {colour} shape .")),
    "start_colour": ("localized", ("what colour is the shape in the {cell} at the start ?",)),
    "start_shape": ("localized", ("what shape is in the {cell} at the start ?",)),
    "end_colour": ("localized", ("what colour is the shape in the {cell} at the end ?",)),
    "end_shape": ("localized", ("what shape is in the {cell} at the end ?",)),
    "count_start": ("global", ("how many shapes are there at the start ?",)),
    "count_end": ("global", ("how many shapes are there at the end ?",)),
    "count_colour_end": ("global", ("how many {colour} shapes are there at the end ?",)),
}
KINDS = ("temporal", "localized", "global")
_EVENT_OF = {"appears": "appear", "appears_colour": "appear", "vanishes": "vanish", "moves": "move",
             "moves_colour": "move", "recolour": "recolour"}


def clip_vocabulary() -> list[str]:
    """The image vocabulary followed by every word clip questions and answers add (a fixed order)."""
    words = list(vocabulary())
    for _, templates in TEMPLATES.values():
        words += [w for w in templates_words(templates)]
    words += list(NUMBERS)
    return list(dict.fromkeys(words))


def templates_words(templates: tuple[str, ...]) -> list[str]:
    return [w for t in templates for w in t.split() if not w.startswith("{")]


def _answerable(qtype: str, clip: Clip) -> bool:
    if qtype in _EVENT_OF:
        return clip.event(_EVENT_OF[qtype]) is not None
    return True


def make_clip_qa(clip: Clip, rng: random.Random, qtype: str | None = None, kind: str | None = None) -> QA:
    """One question about ``clip`` (type drawn uniformly among the answerable ones, optionally of one ``kind``)."""
    types = [t for t, (k, _) in TEMPLATES.items() if (kind is None or k == kind) and _answerable(t, clip)]
    if qtype is None:
        qtype = rng.choice(types)
    k, templates = TEMPLATES[qtype]
    template = rng.choice(templates)
    fill: dict[str, str] = {}
    focus: tuple[int, ...] = ()
    cell = None
    if qtype in _EVENT_OF:
        i = clip.event(_EVENT_OF[qtype])
        tr = clip.tracks[i]
        focus = (i,)
        answer = {"appears": tr.obj.shape, "appears_colour": tr.obj.colour, "vanishes": tr.obj.shape,
                  "moves": tr.obj.shape, "moves_colour": tr.obj.colour, "recolour": tr.new_colour}[qtype]
    elif qtype == "frames_colour":
        present = sorted({o.colour for t in range(clip.frames) for _, o in clip.visible(t)})
        colour = rng.choice(present) if rng.random() < 0.8 else rng.choice(list(COLOURS))
        fill["colour"] = colour
        answer = NUMBERS[sum(any(o.colour == colour for _, o in clip.visible(t)) for t in range(clip.frames))]
        focus = tuple(sorted({i for t in range(clip.frames) for i, o in clip.visible(t) if o.colour == colour}))
    elif qtype in ("start_colour", "start_shape", "end_colour", "end_shape"):
        t = 0 if qtype.startswith("start") else -1
        i, o = rng.choice(clip.visible(t))
        fill["cell"], cell, focus = CELLS[o.cell], o.cell, (i,)
        answer = o.colour if qtype.endswith("colour") else o.shape
    elif qtype in ("count_start", "count_end"):
        answer = NUMBERS[len(clip.visible(0 if qtype == "count_start" else -1))]
    else:  # count_colour_end
        last = clip.visible(-1)
        colour = rng.choice([o.colour for _, o in last]) if rng.random() < 0.7 else rng.choice(list(COLOURS))
        fill["colour"] = colour
        hits = [i for i, o in last if o.colour == colour]
        answer, focus = NUMBERS[len(hits)], tuple(hits)
    return QA(k, qtype, template.format(**fill), answer, focus, cell)


def make_clip_qas(clip: Clip, n: int, seed: int) -> list[QA]:
    """``n`` questions about ``clip``; kinds rotate temporal, localized, global."""
    rng = random.Random(seed)
    return [make_clip_qa(clip, rng, kind=KINDS[i % len(KINDS)]) for i in range(n)]
