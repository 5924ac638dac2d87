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


def clip_doc_to_visual(doc: dict[str, Any]) -> list[str]:
    return [doc["video"]]


def mr_doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None, previous_output: Any = None,
                   round_idx: int | None = None, previous_round_info: Any = None) -> Any:
    """Round 0: the first question; round r: ``(visuals, question r, terminal, previous_output, info)`` (visuals
    None: the same image), terminal after the last question."""
    questions = doc["questions"]
    if round_idx is None:
        return questions[0]
    if round_idx >= len(questions):
        return None, None, True, previous_output, None
    return None, questions[round_idx], False, previous_output, None


def mr_process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    """Exact match averaged over the rounds of one image."""
    rounds = results[0] if results and isinstance(results[0], (list, tuple)) else results
    preds = [r.strip().split()[0] if r and r.strip() else "" for r in rounds]
    hits = [p == a for p, a in zip(preds, doc["answers"])] + [False] * (len(doc["answers"]) - len(preds))
    return {"exact_match": sum(hits) / len(doc["answers"])}
