"""Named presets: each owns its stage schedule and scales it from one ``keep``.

A preset is a function of the LM depth returning stage dicts (``at``, ``keep``, scorer, selector, reducer, options).
:func:`preset_stages` places and scales them; :meth:`tokenprune.PruneConfig.from_preset` and ``apply(model, name,
keep=...)`` are the one way to build them (the eval harness, the benchmark and the vLLM plugin all go through it).
This module imports no other part of the package but the errors (no import cycle with ``config``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .errors import ConfigError

PRE_LLM = "pre_llm"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    schedule: Callable[[int], list[dict[str, Any]]]  # LM depth -> stage dicts
    #: ``keep`` is the budget averaged over the LM's layers (each stage keeps ``keep · ratio``), not the last stage's
    average_ratios: tuple[float, ...] | None = None

    def stages(self, num_layers: int = 32) -> list[dict[str, Any]]:
        return [dict(s) for s in self.schedule(num_layers)]

    @property
    def single_layer_stage(self) -> bool:
        """One stage at a fixed LM layer: a ``layer`` override moves it (not pre_llm, not ``auto``)."""
        stages = self.stages()
        return len(stages) == 1 and isinstance(stages[0]["at"], int)


def _one(**stage: Any) -> Callable[[int], list[dict[str, Any]]]:
    return lambda n: [dict(stage)]


def _adaptinfer_layers(n: int, keeps: list[float]) -> list[dict[str, Any]]:
    """Stages after layers 1, 10, 20 of a 32-layer LM (stages at 2, 11, 21), placed proportionally on other depths."""
    at: list[int] = []
    for frac in (2 / 32, 11 / 32, 21 / 32):
        at.append(max(round(frac * n), at[-1] + 1 if at else 1))
    return [dict(at=a, keep=k, scorer="attention", selector="topk", reducer="drop", query="prior")
            for a, k in zip(at, keeps)]


def _vflowopt_stages(n: int, keeps: list[float]) -> list[dict[str, Any]]:
    """Before the LM (recycling the pruned tokens into 3), then drops before layers 9 and 18 of a 28-layer LM."""
    a = max(1, round(9 * n / 28))
    b = max(a + 1, round(18 * n / 28))
    return [dict(at=PRE_LLM, keep=keeps[0], scorer="vflow", selector="topk", reducer="recycle", recycled=3),
            dict(at=a, keep=keeps[1], scorer="vflow", selector="topk", reducer="drop"),
            dict(at=b, keep=keeps[2], scorer="vflow", selector="topk", reducer="drop")]


_LIST = [
    Preset("fastv", "FastV (Chen et al., ECCV 2024): prune at LM layer 2 by layer 1's last-token attention, keep 25%",
           _one(at=2, keep=0.25, scorer="attention", selector="topk", reducer="drop")),
    Preset("fastv-vk", "FastV with each head's softmax over the visual keys only (AngelSlim's FastV variant): prune at "
           "LM layer 2 by layer 1's last-token attention, keep 25%",
           _one(at=2, keep=0.25, scorer="attention", selector="topk", reducer="drop", keys="visual")),
    Preset("debiased-fastv", "FastV with Attention Debiasing: position trend fitted and divided out per image, "
           "padding and sink tokens excluded, layer 2, keep 25%",
           _one(at=2, keep=0.25, scorer="debiased_attention", selector="topk", reducer="drop")),
    Preset("pyramiddrop", "PyramidDrop (Xing et al., CVPR 2025): attention-ranked drops at 1/4, 1/2, 3/4 of the depth "
           "keeping 50%, 25%, 12.5%",
           lambda n: [dict(at=max(1, n // 4), keep=0.5, scorer="attention"),
                      dict(at=n // 2, keep=0.25, scorer="attention"),
                      dict(at=3 * n // 4, keep=0.125, scorer="attention")]),
    Preset("adaptinfer", "AdaptInfer (Zhang et al., 2025): text-to-vision attention weighted by a text-to-text "
           "attention prior, pruning after layers 1, 10 and 20 of 32 with the released 64-token schedule "
           "(133 / 27 / 3 of 576); keep = the budget averaged over the layers, default 64/576",
           lambda n: _adaptinfer_layers(n, [133 / 576, 27 / 576, 3 / 576]),
           average_ratios=(133 / 64, 27 / 64, 3 / 64)),
    Preset("agile", "AgilePruner-like: per image, MMR between layer-2 attention and diversity with lambda set by the "
           "features' effective rank, keep 25%",
           _one(at=2, keep=0.25, scorer="attention", selector="adaptive", reducer="drop")),
    Preset("mmr-l2", "tokenprune's variant: IDPruner-style MMR (0.3 x importance - 0.7 x redundancy) on layer-1 "
           "last-token attention, pruning at LM layer 2 (FastV's place), keep 25%",
           _one(at=2, keep=0.25, scorer="attention", selector="mmr", reducer="drop", lam=0.3)),
    Preset("mmr-l2-pa", "mmr-l2 with the pruned tokens merged into their most similar kept token and ToMe's "
           "proportional attention (log group size added to each merged key's logits), LM layer 2, keep 25%",
           _one(at=2, keep=0.25, scorer="attention", selector="mmr", reducer="merge", lam=0.3, proportional=True)),
    Preset("idpruner-pa", "IDPruner-style MMR before the LM with the pruned tokens merged into their most similar "
           "kept token and ToMe's proportional attention, keep 25%",
           _one(at=PRE_LLM, keep=0.25, scorer="attention", selector="mmr", reducer="merge", lam=0.5,
                proportional=True)),
    Preset("divprune", "DivPrune (Alvar et al., CVPR 2025): max-min diversity on projector features before the LM, "
           "keep 25%", _one(at=PRE_LLM, keep=0.25, scorer="norm", selector="maxmin", reducer="drop")),
    Preset("idpruner", "IDPruner-style MMR: 0.5 x importance (layer-0 text->visual attention) - 0.5 x redundancy, "
           "pre-LLM, keep 25%", _one(at=PRE_LLM, keep=0.25, scorer="attention", selector="mmr", reducer="drop",
                                     lam=0.5)),
    Preset("cdpruner", "CDPruner (Zhang et al., NeurIPS 2025): conditional DPP (relevance to the instruction x "
           "feature similarity), greedy MAP before the LM, keep 25%",
           _one(at=PRE_LLM, keep=0.25, scorer="text_relevance", selector="dpp", reducer="drop")),
    Preset("holov", "HoloV (Zou et al., NeurIPS 2025): the budget spread over 3x3 image regions by their vision-tower "
           "attention (none left empty), top tokens inside each, pre-LLM, keep 25%",
           _one(at=PRE_LLM, keep=0.25, scorer="holov", selector="topk", reducer="drop", regions=3)),
    Preset("flowcut", "FlowCut (Tong et al., NeurIPS 2025): information flow ([CLS] attention + value-space "
           "attention, times value norms) accumulated over the vision layers, candidates narrowed progressively "
           "by entropy, pre-LLM, keep 25%", _one(at=PRE_LLM, keep=0.25, scorer="flowcut", selector="topk",
                                                   reducer="drop")),
    Preset("vflowopt", "VFlowOpt (Yang et al., ICCV 2025): vision-tower attention from the global queries, kept "
           "before the LM with the pruned tokens recycled into 3, then dropped by the same map at 9/28 and 18/28 of "
           "the depth (released 25% setting); keep = the budget averaged over the layers",
           lambda n: _vflowopt_stages(n, [0.2651, 0.2651 * 0.9833, 0.2651 * 0.9833 * 0.8773]),
           average_ratios=(0.2651 / 0.25, 0.2651 * 0.9833 / 0.25, 0.2651 * 0.9833 * 0.8773 / 0.25)),
    Preset("zoo-prune", "ZOO-Prune (Kim et al., CVPR 2026): zeroth-order sensitivity of the projector (64 random "
           "directions, central differences) x cosine diversity, greedy before the LM, keep 25%",
           _one(at=PRE_LLM, keep=0.25, scorer="zoo", selector="sads", reducer="drop")),
    Preset("visionzip", "VisionZip (Yang et al., CVPR 2025): 54 dominant tokens by vision-tower attention + 10 "
           "contextual tokens (the rest averaged into centres taken with a fixed stride), pre-LLM, 64 per image",
           _one(at=PRE_LLM, keep=64, scorer="cls_attention", selector="visionzip", reducer="merge", contextual=10)),
    Preset("entropyprune", "EntropyPrune-style: at the Entropy Collapse Layer (found by a dense pass on the first "
           "call), keep the tokens whose removal loses most matrix entropy, keep 25%",
           _one(at="auto", keep=0.25, scorer="entropy", selector="topk", reducer="drop")),
    Preset("video-evs", "Efficient-Video-Sampling-like: before the LM, drop the video tokens that changed least from "
           "the same cell of the previous frame (first frame kept first; images rank by feature norm), keep 25%",
           _one(at=PRE_LLM, keep=0.25, scorer="temporal", selector="topk", reducer="drop")),
    Preset("video-divprune", "DivPrune at video scale: max-min diversity on 64-dim sketched cosines with an "
           "incremental greedy (no V x V matrix), before the LM, keep 25%",
           _one(at=PRE_LLM, keep=0.25, scorer="norm", selector="maxmin_fast", reducer="drop")),
    Preset("video-quota", "QuoTA-like: each video's budget split over its frames by relevance to the question "
           "(layer-0 text-to-frame attention), attention top-k inside each frame, before the LM, keep 25%",
           _one(at=PRE_LLM, keep=0.25, scorer="frame_quota", selector="topk", reducer="drop")),
    Preset("random", "Seeded random visual tokens before the LM, keep 25% (a baseline)",
           _one(at=PRE_LLM, keep=0.25, scorer="random", selector="topk", reducer="drop")),
    Preset("uniform", "Evenly strided visual tokens before the LM, keep 25% (a spatial baseline)",
           _one(at=PRE_LLM, keep=0.25, scorer="uniform", selector="topk", reducer="drop")),
]
PRESETS: dict[str, Preset] = {p.name: p for p in _LIST}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def _fraction(keep: Any) -> float | None:
    return float(keep) if isinstance(keep, float) else None


def scale(stages: list[dict[str, Any]], keep: int | float | Sequence[int | float]) -> list[dict[str, Any]]:
    """Sets each stage's budget from one ``keep`` (the last stage's), keeping the schedule's ratios.

    ``keep`` a float: every fractional stage keeps ``keep · r_i / r_last``. ``keep`` an int: stage ``i`` keeps
    ``round(keep · r_i / r_last)`` tokens; earlier stages get ``clip=True`` so that on an item with fewer tokens than
    that they keep what it has (the last stage keeps exactly ``keep`` or raises). ``keep`` a list: one budget per
    stage, as given.
    """
    if isinstance(keep, (list, tuple)):
        if len(keep) != len(stages):
            raise ConfigError(f"keep: got {len(keep)} budgets {list(keep)} for a schedule of {len(stages)} stages; "
                              f"give one per stage")
        return [dict(s, keep=k) for s, k in zip(stages, keep)]
    if len(stages) == 1:
        return [dict(stages[0], keep=keep)]
    ratios = [_fraction(s["keep"]) for s in stages]
    if any(r is None for r in ratios):
        raise ConfigError("keep: this preset's schedule has absolute budgets; give one per stage (keep=[...])")
    out = []
    for i, (s, r) in enumerate(zip(stages, ratios)):
        last = i == len(stages) - 1
        if isinstance(keep, float):
            out.append(dict(s, keep=keep if last else min(1.0, keep * r / ratios[-1])))
        elif isinstance(keep, int) and not isinstance(keep, bool):
            out.append(dict(s, keep=keep) if last else dict(s, keep=round(keep * r / ratios[-1]), clip=True))
        else:
            raise ConfigError(f"keep: got {keep!r}; allowed: an int, a float in (0, 1] or a list of per-stage budgets")
    return out


def scale_average(stages: list[dict[str, Any]], keep: int | float, ratios: Sequence[float]) -> list[dict[str, Any]]:
    """Stage ``i`` keeps ``keep · ratios[i]`` (a fraction capped at 1, or a count of at least 1, with ``clip=True``
    so that an item smaller than an early stage's count keeps what it has): ``keep`` is the layer-averaged budget."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or keep <= 0:
        raise ConfigError(f"keep: got {keep!r}; allowed: an int, a float in (0, 1] or a list of per-stage budgets")
    if isinstance(keep, float):
        return [dict(s, keep=min(1.0, keep * r)) for s, r in zip(stages, ratios)]
    return [dict(s, keep=max(1, round(keep * r)), clip=True) for s, r in zip(stages, ratios)]


def preset_stages(name: str, num_layers: int | None = None, **overrides: Any) -> tuple[list[dict[str, Any]], int]:
    """Stage dicts and seed of preset ``name`` for an LM of ``num_layers`` layers (default 32).

    ``keep`` scales the schedule (:func:`scale`); ``layer`` (alias ``at``) moves a single in-LLM stage; ``seed`` sets
    the config seed; any other override is a method option applied to every stage (validated by ``Stage``).
    """
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}; allowed: {', '.join(preset_names())}")
    stages = PRESETS[name].stages(num_layers or 32)
    seed = overrides.pop("seed", 0)
    if "layer" in overrides:
        if "at" in overrides:
            raise ConfigError("preset overrides: give 'layer' or 'at', not both")
        overrides["at"] = overrides.pop("layer")
    if "at" in overrides and len(stages) != 1:
        raise ConfigError(f"at: preset {name!r} places {len(stages)} stages by depth; give an explicit PruneConfig "
                          f"to move them")
    if "keep" in overrides:
        keep, ratios = overrides.pop("keep"), PRESETS[name].average_ratios
        stages = scale_average(stages, keep, ratios) if ratios and not isinstance(keep, (list, tuple)) \
            else scale(stages, keep)
    return [dict(s, **overrides) for s in stages], seed
