"""One pipeline: prune the backbone's weights once, then attach token pruning to the smaller model — from one config.

A pipeline config (JSON/YAML) has a ``weights`` section (:class:`WeightSpec` fields) and the usual token-pruning
``stages``; the stages are attached during calibration too, so the backbone is pruned for the sequences it will
really see::

    weights: {mlp: 0.2, kv_groups: 1, method: flap}
    stages: [{at: 2, keep: 64, scorer: attention}]
"""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..config import PruneConfig
from ..errors import ConfigError, InputError
from .export import prune
from .plan import WeightPlan, WeightSpec


def load_pipeline_config(source: str | Path | dict[str, Any]) -> tuple[WeightSpec, PruneConfig | None]:
    """(weight spec, token config or None) from a dict or a JSON/YAML file with ``weights`` and ``stages``."""
    if isinstance(source, (str, Path)):
        try:
            text = Path(source).read_text()
        except OSError as e:
            raise InputError(f"config: cannot read {str(source)!r} ({e.strerror or e})") from e
        try:
            if str(source).endswith((".yaml", ".yml")):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as e:  # noqa: BLE001 - yaml.YAMLError / json.JSONDecodeError
            kind = "YAML" if str(source).endswith((".yaml", ".yml")) else "JSON"
            raise ConfigError(f"config: {str(source)!r} is not valid {kind} ({str(e).splitlines()[0]})") from e
    else:
        data = dict(source)
    if not isinstance(data, dict):
        raise ConfigError("pipeline config: expected a mapping with 'weights' and/or 'stages'")
    unknown = set(data) - {"weights", "stages", "seed", "name"}
    if unknown:
        raise ConfigError(f"pipeline config: unknown keys {sorted(unknown)}; allowed: weights, stages, seed, name")
    w = data.get("weights") or {}
    if not isinstance(w, dict):
        raise ConfigError(f"weights: expected a mapping of WeightSpec fields, got {type(w).__name__}")
    names = {f.name for f in fields(WeightSpec)}
    bad = set(w) - names
    if bad:
        raise ConfigError(f"weights: unknown fields {sorted(bad)}; allowed: {', '.join(sorted(names))}")
    tokens = None
    if data.get("stages"):
        tokens = PruneConfig.from_dict({k: v for k, v in data.items() if k != "weights"})
    spec = WeightSpec(**w)
    spec.check_types()
    return spec, tokens


def run_pipeline(model: Any, config: str | Path | dict[str, Any], batches: list[dict[str, Any]]) -> tuple[WeightPlan, Any]:
    """Prunes ``model``'s weights per ``config['weights']`` (calibrated under its token stages), then attaches the
    token stages; returns (plan, token handle or None)."""
    from ..api import apply

    spec, tokens = load_pipeline_config(config)
    plan, _ = prune(model, spec, batches, token_config=tokens)
    return plan, (apply(model, tokens) if tokens is not None else None)


def calibration_batches(processor: Any, source: str, samples: int, seed: int = 0) -> list[dict[str, Any]]:
    """``samples`` single-sample model inputs: ShapesVQA scenes with their question and answer (``'synthetic'``),
    or the images of a folder with a generic prompt."""
    if samples < 1:
        raise InputError(f"samples: got {samples}; allowed: >= 1")
    if getattr(processor, "chat_template", None) is None:
        raise InputError("calibration needs the model's processor with a chat template (save it next to the model)")

    def text(question: str, answer: str | None) -> str:
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        t = processor.apply_chat_template(msgs, add_generation_prompt=True)
        return f"{t} {answer}" if answer else t

    if source == "synthetic":
        from ..shapesvqa.data import examples

        pairs = [(e.image(), text(e.qa.question, e.qa.answer)) for e in examples("train", samples, start=seed)]
    else:
        from ..calibrate import load_images

        images = load_images(source, samples)
        pairs = [(im, text("describe the image .", None)) for im in images]
    return [dict(processor(images=[im], text=[t], return_tensors="pt")) for im, t in pairs]
