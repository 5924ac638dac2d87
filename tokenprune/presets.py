"""Named presets. Each builds its stages for a language model of ``num_layers`` layers (default 32)."""
from __future__ import annotations

from typing import Any, Callable

from .config import PRE_LLM, PruneConfig
from .errors import ConfigError

Stages = Callable[[int], list[dict[str, Any]]]

PRESETS: dict[str, tuple[str, Stages]] = {
    "fastv": ("FastV (Chen et al., ECCV 2024): prune at LM layer 2 by layer 1's last-token attention, keep 25%",
              lambda n: [dict(at=2, keep=0.25, scorer="attention", selector="topk", reducer="drop")]),
    "debiased-fastv": ("FastV with Attention Debiasing: position trend fitted and divided out per image, padding "
                       "and sink tokens excluded, layer 2, keep 25%",
                       lambda n: [dict(at=2, keep=0.25, scorer="debiased_attention", selector="topk", reducer="drop")]),
    "pyramiddrop": ("PyramidDrop (Xing et al., CVPR 2025): attention-ranked drops at 1/4, 1/2, 3/4 of the depth "
                    "keeping 50%, 25%, 12.5%",
                    lambda n: [dict(at=max(1, n // 4), keep=0.5, scorer="attention"),
                               dict(at=n // 2, keep=0.25, scorer="attention"),
                               dict(at=3 * n // 4, keep=0.125, scorer="attention")]),
    "agile": ("AgilePruner-like: per image, MMR between layer-2 attention and diversity with lambda set by the "
              "features' effective rank, keep 25%",
              lambda n: [dict(at=2, keep=0.25, scorer="attention", selector="adaptive", reducer="drop")]),
    "divprune": ("DivPrune (Alvar et al., CVPR 2025): max-min diversity on projector features before the LM, keep 25%",
                 lambda n: [dict(at=PRE_LLM, keep=0.25, scorer="norm", selector="maxmin", reducer="drop")]),
    "idpruner": ("IDPruner-style MMR: 0.5 x importance (layer-0 text->visual attention) - 0.5 x redundancy, "
                 "pre-LLM, keep 25%",
                 lambda n: [dict(at=PRE_LLM, keep=0.25, scorer="attention", selector="mmr", reducer="drop", lam=0.5)]),
    "visionzip": ("VisionZip (Yang et al., CVPR 2025): 54 dominant tokens by vision-tower attention + 10 contextual "
                  "tokens (the rest averaged into evenly spread centres), pre-LLM, 64 per image",
                  lambda n: [dict(at=PRE_LLM, keep=64, scorer="cls_attention", selector="visionzip", reducer="merge",
                                  contextual=10)]),
    "entropyprune": ("EntropyPrune-style: at the Entropy Collapse Layer (found by a dense pass on the first call), keep "
                     "the tokens whose removal loses most matrix entropy, keep 25%",
                     lambda n: [dict(at="auto", keep=0.25, scorer="entropy", selector="topk", reducer="drop")]),
    "random": ("Seeded random visual tokens before the LM, keep 25% (a baseline)",
               lambda n: [dict(at=PRE_LLM, keep=0.25, scorer="random", selector="topk", reducer="drop")]),
    "uniform": ("Evenly strided visual tokens before the LM, keep 25% (a spatial baseline)",
                lambda n: [dict(at=PRE_LLM, keep=0.25, scorer="uniform", selector="topk", reducer="drop")]),
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def build_preset(name: str, num_layers: int | None = None, **overrides: Any) -> PruneConfig:
    """Builds preset ``name`` for an LM of ``num_layers`` layers (``apply()`` passes the model's; default 32).

    Overrides patch every stage of a single-stage preset: ``keep``, ``layer`` (alias of ``at``), scorer options...;
    ``seed`` sets the config seed. Multi-stage presets accept only ``seed``.
    """
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}; allowed: {', '.join(preset_names())}")
    stages = PRESETS[name][1](num_layers or 32)
    seed = overrides.pop("seed", 0)
    if "layer" in overrides:
        if "at" in overrides:
            raise ConfigError("preset overrides: give 'layer' or 'at', not both")
        overrides["at"] = overrides.pop("layer")
    if overrides:
        if len(stages) != 1:
            raise ConfigError(f"preset {name!r} has {len(stages)} stages; override them with an explicit PruneConfig")
        stages[0].update(overrides)
    return PruneConfig(stages=stages, seed=seed, name=name)
