"""Named presets. Each is a function returning the stage dicts; overrides patch the (single) stage."""
from __future__ import annotations

from typing import Any, Callable

from .config import PRE_LLM, PruneConfig
from .errors import ConfigError

PRESETS: dict[str, tuple[str, Callable[[], list[dict[str, Any]]]]] = {
    "fastv": ("FastV (Chen et al. 2024): text->visual attention of the last token at LM layer 2, keep 25%",
              lambda: [dict(at=2, keep=0.25, scorer="attention", selector="topk", reducer="drop")]),
    "divprune": ("DivPrune (Alvar et al., CVPR 2025): max-min diversity on projector features before the LM, keep 25%",
                 lambda: [dict(at=PRE_LLM, keep=0.25, scorer="norm", selector="maxmin", reducer="drop")]),
    "idpruner": ("IDPruner-style MMR: 0.5·importance (layer-0 text->visual attention) − 0.5·redundancy, pre-LLM, keep 25%",
                 lambda: [dict(at=PRE_LLM, keep=0.25, scorer="attention", selector="mmr", reducer="drop", lam=0.5)]),
    "visionzip": ("VisionZip-style: vision-tower [CLS] attention picks dominant tokens, the rest merge into their most "
                  "similar kept token, pre-LLM, keep 64 per image (LLaVA family)",
                  lambda: [dict(at=PRE_LLM, keep=64, scorer="cls_attention", selector="topk", reducer="merge")]),
    "random": ("Seeded random visual tokens before the LM, keep 25% (a baseline)",
               lambda: [dict(at=PRE_LLM, keep=0.25, scorer="random", selector="topk", reducer="drop")]),
    "uniform": ("Evenly strided visual tokens before the LM, keep 25% (a spatial baseline)",
                lambda: [dict(at=PRE_LLM, keep=0.25, scorer="uniform", selector="topk", reducer="drop")]),
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def build_preset(name: str, **overrides: Any) -> PruneConfig:
    """Builds preset ``name``; ``layer=`` is an alias of ``at=``; ``seed=`` sets the config seed."""
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}; allowed: {', '.join(preset_names())}")
    stages = PRESETS[name][1]()
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
