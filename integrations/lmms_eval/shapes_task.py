"""ShapesVQA task functions for lmms-eval (imported by the ``utils.py`` that ``tasks.write_tasks`` writes)."""
from __future__ import annotations

from typing import Any


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    from PIL import Image

    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    return doc["question"]


def doc_to_choice(doc: dict[str, Any]) -> list[str]:
    return list(doc["choices"])


def doc_to_target_index(doc: dict[str, Any]) -> int:
    return list(doc["choices"]).index(doc["answer"])


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    pred = results[0].strip().split()[0] if results and results[0].strip() else ""
    return {"exact_match": float(pred == doc["answer"])}
