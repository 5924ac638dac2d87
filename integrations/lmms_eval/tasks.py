"""Offline ShapesVQA tasks for lmms-eval, written to a local folder (no hub access needed).

    python -m tokenprune.integrations.lmms_eval.tasks --out DIR [--split test] [--limit 200]
    python -m lmms_eval --model tokenprune --include_path DIR --tasks shapesvqa,shapesvqa_mc ...

``shapesvqa``: open answer (one word, exact match), ``generate_until``. ``shapesvqa_mc``: the same questions with
the answers the question's type allows as choices, ``multiple_choice`` (lmms-eval scores it with ``loglikelihood``).
The JSONL holds absolute image paths, so the folder is specific to this machine; rewrite it elsewhere.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...errors import InputError
from ...shapesvqa.data import SPLITS, write_split
from ...shapesvqa.questions import NUMBERS
from ...shapesvqa.scene import COLOURS, SHAPES

CHOICES = {"cell_colour": COLOURS, "most_colour": COLOURS, "cell_shape": SHAPES, "exists": ("yes", "no"),
           "cell_empty": ("yes", "no"), "more": ("yes", "no"), "count_all": NUMBERS, "count_colour": NUMBERS,
           "count_shape": NUMBERS}

COMMON = """dataset_path: json
dataset_kwargs:
  data_files:
    {split}: {data}
test_split: {split}
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
metadata:
  version: 1.0
"""
OPEN = """task: shapesvqa
output_type: generate_until
generation_kwargs:
  max_new_tokens: 1
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
MC = """task: shapesvqa_mc
output_type: multiple_choice
doc_to_choice: !function utils.doc_to_choice
doc_to_target: !function utils.doc_to_target_index
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
UTILS = '''"""Written by tokenprune.integrations.lmms_eval.tasks (ShapesVQA for lmms-eval)."""
from tokenprune.integrations.lmms_eval.shapes_task import (doc_to_choice, doc_to_target_index, doc_to_text,  # noqa
                                                           doc_to_visual, process_results)
'''


def write_tasks(out_dir: str | Path, split: str = "test", limit: int = 200) -> Path:
    """Writes ``limit`` examples of ``split`` (PNG + JSONL with absolute image paths and choices) and the two task
    YAMLs into ``out_dir``; returns the folder to pass as ``--include_path``."""
    if split not in SPLITS:
        raise InputError(f"split: got {split!r}; allowed: {', '.join(SPLITS)}")
    if limit < 1:
        raise InputError(f"limit: got {limit}; allowed: >= 1")
    out = Path(out_dir).resolve()
    path = write_split(split, limit, out)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    with open(path, "w") as f:
        for r in rows:
            r["image"] = str(out / r["image"])
            r["choices"] = list(CHOICES[r["type"]])
            f.write(json.dumps(r) + "\n")
    common = COMMON.format(split=split, data=json.dumps(str(path)))
    (out / "shapesvqa.yaml").write_text(OPEN + common)
    (out / "shapesvqa_mc.yaml").write_text(MC + common.replace("doc_to_target: answer\n", ""))
    (out / "utils.py").write_text(UTILS)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="write the ShapesVQA lmms-eval tasks into a folder")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=200)
    a = p.parse_args(argv)
    print(write_tasks(a.out, a.split, a.limit))


if __name__ == "__main__":
    main()
