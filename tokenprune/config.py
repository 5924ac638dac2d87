"""Pruning configuration: :class:`Stage` and :class:`PruneConfig`, validated on construction."""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from .errors import ConfigError
from .presets import preset_stages
from .registry import REDUCERS, SCORERS, SELECTORS

PRE_LLM = "pre_llm"
AUTO = "auto"


class Stage:
    """One pruning step: where (``at``), how many visual tokens survive (``keep``) and how they are chosen.

    ``at``: ``"pre_llm"`` (after the projector, before the language model) or an LM layer index ``K``
    (layers ``>= K`` see only the kept tokens).
    ``keep``: an ``int`` number of visual tokens kept *per image* or a ``float`` fraction in ``(0, 1]`` of each
    image's original visual tokens.
    ``clip``: an int ``keep`` above what an item has at this stage keeps all of it instead of raising (presets
    scaled from one budget set it on their earlier stages).
    Extra keyword arguments are options of the scorer, selector or reducer (each option goes to the one whose
    keyword-only parameters name it), e.g. ``query="text"`` for ``attention`` or ``lam=0.5`` for ``mmr``.
    """

    def __init__(
        self,
        at: str | int = PRE_LLM,
        keep: int | float = 0.25,
        scorer: str = "attention",
        selector: str = "topk",
        reducer: str = "drop",
        clip: bool = False,
        **options: Any,
    ) -> None:
        self.at = at
        self.clip = clip
        self.keep = keep
        self.scorer = scorer
        self.selector = selector
        self.reducer = reducer
        self.options = dict(options)
        self.validate()

    # -- validation ---------------------------------------------------------------------------------------
    def validate(self) -> None:
        at = self.at
        if isinstance(at, bool) or not (at in (PRE_LLM, AUTO) or (isinstance(at, int) and at >= 0)):
            raise ConfigError(f"Stage.at: got {at!r}; allowed: 'pre_llm', 'auto' (entropy-collapse layer) or an LM "
                              f"layer index >= 0")
        keep = self.keep
        if isinstance(keep, bool) or not isinstance(keep, (int, float)):
            raise ConfigError(f"Stage.keep: got {keep!r}; allowed: int >= 1 (tokens per image) or float in (0, 1]")
        if isinstance(keep, int) and keep < 1:
            raise ConfigError(f"Stage.keep: got {keep}; an int keep must be >= 1 (tokens per image)")
        if isinstance(keep, float) and not (0.0 < keep <= 1.0):
            raise ConfigError(f"Stage.keep: got {keep}; a fractional keep must be in (0, 1]")
        if not isinstance(self.clip, bool):
            raise ConfigError(f"Stage.clip: got {self.clip!r}; allowed: True or False")
        parts = {"scorer": SCORERS.get(self.scorer, "Stage.scorer"),
                 "selector": SELECTORS.get(self.selector, "Stage.selector"),
                 "reducer": REDUCERS.get(self.reducer, "Stage.reducer")}
        routed: dict[str, dict[str, Any]] = {k: {} for k in parts}
        for key, value in self.options.items():
            owners = [k for k, spec in parts.items() if key in spec.option_names]
            if not owners:
                allowed = {f"{k} {getattr(self, k)!r}": sorted(spec.option_names) or "none"
                           for k, spec in parts.items()}
                raise ConfigError(f"Stage.{key}: not an option of this stage; allowed: {allowed}")
            for owner in owners:  # an option may be shared, e.g. ``contextual`` by the visionzip selector and merge
                routed[owner][key] = value
        where = "pre_llm" if at == PRE_LLM else "llm"
        for kind, spec in parts.items():
            spec.check(routed[kind])
            if where not in spec.where:
                raise ConfigError(f"Stage.at: {kind} {spec.name!r} cannot run at {at!r}; allowed: "
                                  f"{', '.join(sorted(spec.where))}")
        self.specs = parts
        self.kwargs = routed  # kind -> the options routed to that method
        self.scorer_kwargs, self.selector_kwargs, self.reducer_kwargs = (
            routed["scorer"], routed["selector"], routed["reducer"])

    def captures(self) -> set[str]:
        """What the runtime must capture for this stage (from the specs of its scorer, selector and reducer)."""
        return set().union(*(spec.captures_for(self.kwargs[k]) for k, spec in self.specs.items()))

    @property
    def proportional(self) -> bool:
        """Whether this stage merges with ToMe's proportional attention (``merge`` with ``proportional=True``)."""
        return self.reducer == "merge" and bool(self.reducer_kwargs.get("proportional"))

    @property
    def layer(self) -> int | None:
        """The LM layer index of an in-LLM stage, ``None`` for ``pre_llm`` and (until resolved) ``auto``."""
        return None if self.at in (PRE_LLM, AUTO) else int(self.at)

    def budget(self, n_tokens: int, available: int | None = None) -> int:
        """Tokens kept for an item that had ``n_tokens`` visual tokens originally and has ``available`` now
        (``clip`` caps an int budget at ``available``)."""
        if isinstance(self.keep, float):
            return max(1, min(n_tokens, round(self.keep * n_tokens)))
        if self.clip:
            return min(int(self.keep), n_tokens if available is None else available)
        return int(self.keep)

    def to_dict(self) -> dict[str, Any]:
        d = {"at": self.at, "keep": self.keep, "scorer": self.scorer, "selector": self.selector,
             "reducer": self.reducer, **self.options}
        if self.clip:
            d["clip"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stage":
        if not isinstance(d, dict):
            raise ConfigError(f"Stage: expected a mapping, got {type(d).__name__}")
        return cls(**d)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stage) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "Stage(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"


class PruneConfig:
    """An ordered schedule of :class:`Stage` s (``pre_llm`` first, then strictly increasing layers)."""

    def __init__(self, stages: Sequence[Stage | dict] | None = None, seed: int = 0, name: str | None = None) -> None:
        if stages is None or isinstance(stages, (Stage, dict)) or not isinstance(stages, Iterable):
            raise ConfigError("PruneConfig.stages: expected a non-empty list of Stage")
        self.stages = [s if isinstance(s, Stage) else Stage.from_dict(s) for s in stages]
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
            raise ConfigError(f"PruneConfig.seed: got {seed!r}; allowed: an int in [0, 2**32)")
        self.seed = seed
        self.name = name
        self.validate()

    def validate(self) -> None:
        if not self.stages:
            raise ConfigError("PruneConfig.stages: expected at least one Stage")
        autos = [i for i, s in enumerate(self.stages) if s.at == AUTO]
        if autos and (len(self.stages) - (self.stages[0].at == PRE_LLM) != 1):
            raise ConfigError("PruneConfig.stages: at='auto' must be the only in-LLM stage (optionally after a "
                              "pre_llm stage)")
        order = [-1 if s.at == PRE_LLM else (0 if s.at == AUTO else s.at) for s in self.stages]
        if any(b <= a for a, b in zip(order, order[1:])):
            raise ConfigError(f"PruneConfig.stages: stages must be ordered pre_llm first, then strictly increasing "
                              f"layers; got at={[s.at for s in self.stages]}")
        for a, b in zip(self.stages, self.stages[1:]):
            if type(a.keep) is type(b.keep) and b.keep > a.keep and not a.clip:
                raise ConfigError(f"PruneConfig.stages: keep must not grow from one stage to the next "
                                  f"({a.keep} at {a.at!r} -> {b.keep} at {b.at!r})")

    def validate_for(self, num_layers: int) -> None:
        """Checks that layer indices exist in a language model with ``num_layers`` layers."""
        for s in self.stages:
            if s.at == AUTO and num_layers < 3:
                raise ConfigError(f"Stage.at: 'auto' needs a language model with at least 3 layers; this one has "
                                  f"{num_layers}")
            if s.layer is not None and s.layer >= num_layers:
                raise ConfigError(f"Stage.at: layer {s.layer} does not exist; allowed: 'pre_llm' or 0..{num_layers - 1}")

    @classmethod
    def from_preset(cls, name: str, num_layers: int | None = None, **overrides: Any) -> "PruneConfig":
        """A named preset (see ``tokenprune.presets``) with overrides such as ``keep=64``, ``keep=[288, 144, 64]``
        or ``layer=3``; depth-relative presets (``pyramiddrop``) place their stages for ``num_layers`` (default 32)
        and scale their whole schedule from ``keep`` (the last stage keeps ``keep``)."""
        stages, seed = preset_stages(name, num_layers=num_layers, **overrides)
        return cls(stages=stages, seed=seed, name=name)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"stages": [s.to_dict() for s in self.stages], "seed": self.seed}
        if self.name:
            d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PruneConfig":
        if not isinstance(d, dict) or "stages" not in d:
            raise ConfigError("PruneConfig: expected a mapping with a 'stages' list")
        extra = set(d) - {"stages", "seed", "name"}
        if extra:
            raise ConfigError(f"PruneConfig: unknown fields {sorted(extra)}; allowed: stages, seed, name")
        return cls(stages=d["stages"], seed=d.get("seed", 0), name=d.get("name"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_file(cls, path: str) -> "PruneConfig":
        """Loads a config from a ``.json`` or ``.yaml``/``.yml`` file."""
        import os

        if not os.path.isfile(path):
            raise ConfigError(f"config: {path!r} is not a file")
        with open(path) as f:
            text = f.read()
        if path.endswith((".yaml", ".yml")):
            import yaml

            return cls.from_dict(yaml.safe_load(text))
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PruneConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"PruneConfig(stages={self.stages!r}, seed={self.seed})"
