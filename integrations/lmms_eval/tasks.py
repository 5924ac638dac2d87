"""Offline ShapesVQA tasks for lmms-eval, written to a local folder (no hub access needed).

    python -m tokenprune.integrations.lmms_eval.tasks --out DIR [--split test] [--limit 200]
    python -m lmms_eval --model tokenprune --include_path DIR --tasks shapesvqa,shapesvqa_mc ...

``shapesvqa``: open answer (one word, exact match), ``generate_until``. ``shapesvqa_mc``: the same questions with
the answers the question's type allows as choices, ``multiple_choice`` (lmms-eval scores it with ``loglikelihood``).
``shapesvqa_mr``: three questions about each image asked in three rounds, ``generate_until_multi_round``.
``shapesvqa_clips`` (``--clips N``): ShapesVQA clips as mp4 files (video; Qwen-VL and LLaVA-OneVision families).
The JSONL holds absolute image paths, so the folder is specific to this machine; rewrite it elsewhere.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...errors import InputError
from ...shapesvqa.clip_data import CLIP_SPLITS, write_clips
from ...shapesvqa.data import SPLITS, example, write_split
from ...shapesvqa.questions import NUMBERS, make_qas
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
MR = """task: shapesvqa_mr
output_type: generate_until_multi_round
generation_kwargs:
  max_new_tokens: 1
  temperature: 0
  do_sample: false
doc_to_text: !function utils.mr_doc_to_text
process_results: !function utils.mr_process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
CLIPS = OPEN.replace("task: shapesvqa\n", "task: shapesvqa_clips\n")
UTILS = '''"""Written by tokenprune.integrations.lmms_eval.tasks (ShapesVQA for lmms-eval)."""
from tokenprune.integrations.lmms_eval.shapes_task import (clip_doc_to_visual, doc_to_choice,  # noqa
                                                           doc_to_target_index, doc_to_text, doc_to_visual,
                                                           mr_doc_to_text, mr_process_results, process_results)
'''
ROUNDS = 3


def write_tasks(out_dir: str | Path, split: str = "test", limit: int = 200, clips: int = 0,
                clip_split: str = "clips-test") -> Path:
    """Writes ``limit`` examples of ``split`` (PNG + JSONL with absolute image paths and choices), the multi-round
    variant, ``clips`` examples of ``clip_split`` (mp4 + JSONL) when asked, and the task YAMLs into ``out_dir``;
    returns the folder to pass as ``--include_path``."""
    if split not in SPLITS:
        raise InputError(f"split: got {split!r}; allowed: {', '.join(SPLITS)}")
    if limit < 1:
        raise InputError(f"limit: got {limit}; allowed: >= 1")
    if clips < 0:
        raise InputError(f"clips: got {clips}; allowed: >= 0")
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
    mr = out / f"{split}_mr.jsonl"
    with open(mr, "w") as f:
        for r in rows:
            ex = example(split, r["index"])
            qas = [ex.qa] + make_qas(ex.scene, ROUNDS - 1, ex.scene.seed * 7 + 1)
            f.write(json.dumps({**r, "questions": [q.question for q in qas], "answers": [q.answer for q in qas]})
                    + "\n")
    (out / "shapesvqa_mr.yaml").write_text(MR + COMMON.format(split=split, data=json.dumps(str(mr))).replace(
        "doc_to_text: !function utils.doc_to_text\n", ""))
    if clips:
        if clip_split not in CLIP_SPLITS:
            raise InputError(f"clip_split: got {clip_split!r}; allowed: {', '.join(CLIP_SPLITS)}")
        cpath = write_clips(clip_split, clips, out)
        crow = [json.loads(line) for line in cpath.read_text().splitlines()]
        cpath.write_text("".join(json.dumps({**r, "video": str(out / r["video"])}) + "\n" for r in crow))
        (out / "shapesvqa_clips.yaml").write_text(CLIPS + COMMON.format(split="test", data=json.dumps(
            str(cpath))).replace("utils.doc_to_visual", "utils.clip_doc_to_visual"))
    (out / "utils.py").write_text(UTILS)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="write the ShapesVQA lmms-eval tasks into a folder")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--clips", type=int, default=0, help="also write this many clips (mp4) as shapesvqa_clips")
    p.add_argument("--clip-split", default="clips-test")
    a = p.parse_args(argv)
    print(write_tasks(a.out, a.split, a.limit, a.clips, a.clip_split))


if __name__ == "__main__":
    main()
