"""``tokenprune tune``: which pruning config is best for *this* model at a given budget.

Every candidate (each preset the model supports, scaled to ``keep``; single-layer in-LLM presets also at the
``layers`` asked for) answers ``calib`` calibration questions. Candidates are ranked by accuracy against the
answers, or — when the data has no answers, or ``mode="agreement"`` — by agreement with the dense model's own
answers, then by LM FLOPs. The winner is written as a config file that ``tp.apply(model, "auto-tuned.yaml")`` takes.

Calibration data: the ShapesVQA *val* split for the embedded models (disjoint from the test split that ``tokenprune
eval`` reports on), or ``data=DIR_OR_FILE``: a JSONL of ``{"image": path, "question": str, "answer": str?}`` (paths
relative to the file) for any supported model, answered by greedy generation and compared after normalising case
and whitespace.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import PruneConfig
from ..errors import InputError, TokenPruneError
from ..presets import PRESETS

MODES = ("auto", "answers", "agreement")


@dataclass
class Tune:
    model: str = "embedded"
    keep: int | float = 64
    calib: int = 200
    data: str | None = None
    presets: list[str] = field(default_factory=list)  # empty: every preset
    layers: list[int] = field(default_factory=list)  # more layers for single-layer in-LLM presets
    mode: str = "auto"
    batch: int = 16
    max_new_tokens: int = 8

    def validate(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"mode: got {self.mode!r}; allowed: {', '.join(MODES)}")
        if self.calib < 1 or self.batch < 1 or self.max_new_tokens < 1:
            raise InputError(f"calib/batch/max_new_tokens: got {self.calib}/{self.batch}/{self.max_new_tokens}; "
                             f"allowed: >= 1")
        k = self.keep
        if not (isinstance(k, int) and k >= 1 or isinstance(k, float) and 0 < k < 1):
            raise InputError(f"keep: got {k!r}; allowed: tokens per item (>= 1) or a fraction in (0, 1)")
        unknown = [p for p in self.presets if p not in PRESETS]
        if unknown:
            raise InputError(f"presets: unknown {unknown}; allowed: {', '.join(sorted(PRESETS))}")


def candidates(t: Tune, num_layers: int) -> list[tuple[str, PruneConfig]]:
    """(label, config) for every preset × layer to try."""
    out = []
    for name in t.presets or sorted(PRESETS):
        out.append((name, PruneConfig.from_preset(name, num_layers=num_layers, keep=t.keep)))
        if PRESETS[name].single_layer_stage:
            default = out[-1][1].stages[0].at
            for layer in t.layers:
                if 0 < layer < num_layers and layer != default:
                    out.append((f"{name}@L{layer}", PruneConfig.from_preset(name, num_layers=num_layers,
                                                                            keep=t.keep, layer=layer)))
    return out


def _read_data(path: str, n: int) -> list[dict[str, Any]]:
    file = os.path.join(path, "data.jsonl") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise InputError(f"data: {path!r} is neither a JSONL file nor a folder with data.jsonl")
    rows = []
    with open(file) as f:
        for i, line in enumerate(f):
            if len(rows) == n:
                break
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                img, q = r["image"], r["question"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise InputError(f"data: line {i + 1} of {file} needs a JSON object with image and question "
                                 f"({type(e).__name__}: {e})") from None
            r["image"] = img if os.path.isabs(img) else os.path.join(os.path.dirname(file), img)
            rows.append(r)
    if not rows:
        raise InputError(f"data: {file} holds no examples")
    return rows


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().split())


class _Generic:
    """Any supported HF model: chat-template prompts, greedy generation, normalised string answers."""

    def __init__(self, model_dir: str, rows: list[dict[str, Any]], t: Tune) -> None:
        import transformers
        from PIL import Image
        from transformers import AutoConfig, AutoProcessor

        from ..adapters import family

        cfg = AutoConfig.from_pretrained(model_dir)
        self.model = getattr(transformers, family(getattr(cfg, "model_type", None)).hf_class).from_pretrained(
            model_dir).eval()
        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.processor.tokenizer.padding_side = "left"
        self.truth = [r.get("answer") for r in rows]
        self.t = t
        self.batches = []
        for i in range(0, len(rows), t.batch):
            chunk = rows[i:i + t.batch]
            texts = [self.processor.apply_chat_template([{"role": "user", "content": [
                {"type": "image"}, {"type": "text", "text": r["question"]}]}], add_generation_prompt=True)
                for r in chunk]
            images = [Image.open(r["image"]).convert("RGB") for r in chunk]
            self.batches.append(self.processor(text=texts, images=images, return_tensors="pt", padding=True))

    def answers(self) -> list[str]:
        out = []
        with torch.no_grad():
            for x in self.batches:
                seq = self.model.generate(**x, max_new_tokens=self.t.max_new_tokens, do_sample=False)
                out += [_norm(s) for s in self.processor.tokenizer.batch_decode(
                    seq[:, x["input_ids"].shape[1]:], skip_special_tokens=True)]
        return out


class _Shapes:
    """The embedded ShapesVQA models: the val split, one-word answers read at the answer position."""

    def __init__(self, model_dir: str, t: Tune) -> None:
        from ..shapesvqa.embedded import load
        from .quality import prepare

        self.model, processor = load(model_dir)
        exs, self.inputs = prepare(processor, "val", t.calib, t.batch)
        self.truth = [e.qa.answer for e in exs]
        self.vocab = processor.tokenizer.convert_ids_to_tokens(list(range(self.model.config.text_config.vocab_size)))

    def answers(self) -> list[str]:
        from .quality import answers

        with torch.no_grad():
            return [_norm(a) for a in answers(self.model, self.inputs, self.vocab)[0]]


def run_tune(t: Tune, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Ranks the candidates; returns ``{"rows": [...best first], "best": config dict, "mode", "dense", ...}``."""
    from ..api import pruned
    from ..shapesvqa.embedded import family as shapes_family

    t.validate()
    shapes = t.data is None
    if shapes:
        try:
            shapes_family(t.model)
        except TokenPruneError as e:
            raise InputError(f"data: {t.model!r} is not a ShapesVQA model; give calibration data (a JSONL of "
                             f"image/question[/answer]) ({e})") from None
        runner: Any = _Shapes(t.model, t)
    else:
        runner = _Generic(t.model, _read_data(t.data, t.calib), t)
    has_answers = all(a is not None for a in runner.truth)
    mode = ("answers" if has_answers else "agreement") if t.mode == "auto" else t.mode
    if mode == "answers" and not has_answers:
        raise InputError("mode: 'answers' needs an answer on every calibration example; use 'agreement'")
    num_layers = runner.model.config.get_text_config().num_hidden_layers
    if progress:
        progress("dense")
    dense = runner.answers()
    ref = [_norm(a) for a in runner.truth] if mode == "answers" else dense
    score = lambda preds: sum(p == r for p, r in zip(preds, ref)) / len(ref)  # noqa: E731
    rows = []
    for label, cfg in candidates(t, num_layers):
        if progress:
            progress(label)
        try:
            with pruned(runner.model, cfg) as h:
                preds = runner.answers()
                flops = h.stats.flops_ratio
        except TokenPruneError as e:  # the family cannot run this method (e.g. no [CLS] attention)
            rows.append({"candidate": label, "skipped": str(e).splitlines()[0]})
            continue
        rows.append({"candidate": label, "score": score(preds), "flops_ratio": flops, "config": cfg.to_dict()})
    ran = sorted((r for r in rows if "score" in r), key=lambda r: (-r["score"], r["flops_ratio"], r["candidate"]))
    if not ran:
        raise InputError("presets: no candidate could run on this model")
    return {"model": t.model, "keep": t.keep, "calib": len(ref), "mode": mode, "dense_score": score(dense),
            "rows": ran + [r for r in rows if "skipped" in r], "best": ran[0]["config"],
            "best_candidate": ran[0]["candidate"]}


def write_config(config: dict[str, Any], path: str) -> None:
    """The winning config as YAML (``.yaml``/``.yml``) or JSON."""
    with open(path, "w") as f:
        if path.endswith((".yaml", ".yml")):
            import yaml

            yaml.safe_dump(config, f, sort_keys=False)
        else:
            json.dump(config, f, indent=2)
