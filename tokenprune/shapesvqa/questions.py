"""ShapesVQA questions: single-word answers from templates of two kinds.

``localized`` — the evidence is one object (≈1–4% of the image): colour or shape at a cell, whether a specific
coloured shape exists, whether a cell is empty. ``global`` — the evidence is spread over the image: counts (all,
by colour, by shape), the most frequent colour, comparisons of two shape counts.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass

from .scene import CELLS, COLOURS, SHAPES, Scene

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven")
PLURAL = {s: s + "s" for s in SHAPES}

TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cell_colour": ("localized", ("what colour is the shape in the {cell} ?", "which colour does the {cell} shape have ?",
                                  "name the colour of the object at the {cell} .")),
    "cell_shape": ("localized", ("what shape is in the {cell} ?", "which shape is at the {cell} ?",
                                 "name the shape in the {cell} .")),
    "exists": ("localized", ("is there a {colour} {shape} ?", "does the image contain a {colour} {shape} ?")),
    "cell_empty": ("localized", ("is the {cell} empty ?", "is there no shape in the {cell} ?")),
    "count_all": ("global", ("how many shapes are there ?", "count the shapes .")),
    "count_colour": ("global", ("how many {colour} shapes are there ?", "count the {colour} shapes .")),
    "count_shape": ("global", ("how many {plural} are there ?", "count the {plural} .")),
    "most_colour": ("global", ("which colour is most common ?", "what is the most frequent colour ?")),
    "more": ("global", ("are there more {plural} than {plural2} ?", "do {plural} outnumber {plural2} ?")),
}
KINDS = ("localized", "global")


@dataclass(frozen=True)
class QA:
    """One question; ``focus`` lists the objects whose patches hold the evidence (indices into the scene's objects;
    empty: every object), ``cell`` the grid cell a cell question names."""
    kind: str
    type: str
    question: str
    answer: str
    focus: tuple[int, ...] = ()
    cell: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def vocabulary() -> list[str]:
    """Every word a question or an answer can use (the tokenizer's vocabulary, in a fixed order)."""
    words: list[str] = []
    for _, templates in TEMPLATES.values():
        for t in templates:
            words += [w for w in t.split() if not w.startswith("{")]
    words += list(CELLS) + list(COLOURS) + list(SHAPES) + list(PLURAL.values()) + list(NUMBERS) + ["yes", "no"]
    return list(dict.fromkeys(words))


def _answerable(qtype: str, scene: Scene) -> bool:
    if qtype == "most_colour":
        counts = Counter(o.colour for o in scene.objects).most_common()
        return len(counts) == 1 or counts[0][1] > counts[1][1]
    return True


def make_qa(scene: Scene, rng: random.Random, qtype: str | None = None, kind: str | None = None,
            weights: dict[str, float] | None = None) -> QA:
    """One question about ``scene`` (type drawn among the answerable ones, optionally of one ``kind``; uniformly, or
    in proportion to ``weights`` — a training curriculum; the splits always draw uniformly)."""
    types = [t for t, (k, _) in TEMPLATES.items() if (kind is None or k == kind) and _answerable(t, scene)]
    if qtype is None:
        qtype = rng.choices(types, [weights.get(t, 1.0) for t in types])[0] if weights else rng.choice(types)
    k, templates = TEMPLATES[qtype]
    template = rng.choice(templates)
    objs = scene.objects
    fill: dict[str, str] = {}
    focus: list[int] = []
    cell = None
    if qtype in ("cell_colour", "cell_shape"):
        o = rng.choice(objs)
        fill["cell"], cell = CELLS[o.cell], o.cell
        answer = o.colour if qtype == "cell_colour" else o.shape
    elif qtype == "cell_empty":
        cell = rng.randrange(len(CELLS))
        fill["cell"] = CELLS[cell]
        empty = scene.at(cell) is None
        answer = "yes" if empty else "no"
    elif qtype == "exists":
        present = {(o.colour, o.shape) for o in objs}
        if rng.random() < 0.5:
            colour, shape = rng.choice(sorted(present))
        else:
            absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
            colour, shape = rng.choice(absent)
        fill.update(colour=colour, shape=shape)
        answer = "yes" if (colour, shape) in present else "no"
        focus = [i for i, o in enumerate(objs) if o.colour == colour]
    elif qtype == "count_all":
        answer = NUMBERS[len(objs)]
    elif qtype == "count_colour":
        colour = rng.choice([o.colour for o in objs]) if rng.random() < 0.7 else rng.choice(list(COLOURS))
        fill["colour"] = colour
        answer = NUMBERS[sum(o.colour == colour for o in objs)]
        focus = [i for i, o in enumerate(objs) if o.colour == colour]
    elif qtype == "count_shape":
        shape = rng.choice([o.shape for o in objs]) if rng.random() < 0.7 else rng.choice(SHAPES)
        fill["plural"] = PLURAL[shape]
        answer = NUMBERS[sum(o.shape == shape for o in objs)]
        focus = [i for i, o in enumerate(objs) if o.shape == shape]
    elif qtype == "most_colour":
        answer = Counter(o.colour for o in objs).most_common(1)[0][0]
    else:  # more
        a, b = rng.sample(SHAPES, 2)
        fill.update(plural=PLURAL[a], plural2=PLURAL[b])
        answer = "yes" if sum(o.shape == a for o in objs) > sum(o.shape == b for o in objs) else "no"
        focus = [i for i, o in enumerate(objs) if o.shape in (a, b)]
    return QA(k, qtype, template.format(**fill), answer, tuple(focus), cell)


def make_qas(scene: Scene, n: int, seed: int, weights: dict[str, float] | None = None) -> list[QA]:
    """``n`` questions about ``scene``; kinds alternate (localized first), so each kind gets half."""
    rng = random.Random(seed)
    return [make_qa(scene, rng, kind=KINDS[i % 2], weights=weights) for i in range(n)]
