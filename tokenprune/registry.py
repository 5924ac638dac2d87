"""Method specs and the registries of scorers, selectors and reducers.

Every method registers once, with a :class:`MethodSpec` that declares what it needs: its options (typed, with
ranges), what the runtime must capture for it, where it is valid, which modalities it handles, whether it reads the
text query, and its batched form. Config validation, ``tokenprune info``, the vLLM plugin's "can this be served" check
and the docs all read these specs; there is no other list of methods.

Adding a method is a one-file change, inside or outside the package::

    @SCORERS.register("my_scorer", options=[Option("alpha", float, 0.5, low=0, high=1)], captures={"features"})
    def my_scorer(view, *, alpha=0.5): ...
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from .errors import ConfigError, RegistrationError

#: what a method can ask the runtime for
CAPTURES = ("features", "lm_attention", "vision_attention", "vision_flow", "vision_global", "projector_sensitivity",
            "padding", "hidden_states")
#: where a stage can run: before the language model, or at an LM layer
WHERE = ("pre_llm", "llm")
MODALITIES = ("image", "video")
KINDS = ("scorer", "selector", "reducer")


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    para = " ".join(doc.strip().split("\n\n")[0].split())
    end = para.find(". ")
    return para if end < 0 else para[: end + 1]


@dataclass(frozen=True)
class Option:
    """A typed option of a method. ``low``/``high`` bound numbers (inclusive), ``choices`` bound strings;
    ``none_ok`` admits ``None``."""

    name: str
    type: type
    default: Any
    doc: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    none_ok: bool = False

    def allowed(self) -> str:
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.type is bool:
            text = "True or False"
        else:
            kind = {int: "an int", float: "a number", str: "a string"}.get(self.type, self.type.__name__)
            if self.low is not None and self.high is not None:
                text = f"{kind} in [{self.low:g}, {self.high:g}]"
            elif self.low is not None:
                text = f"{kind} >= {self.low:g}"
            elif self.high is not None:
                text = f"{kind} <= {self.high:g}"
            else:
                text = kind
        return text + (" or None" if self.none_ok else "")

    def check(self, value: Any) -> None:
        """Raises :class:`ConfigError` naming ``Stage.<name>`` unless ``value`` is allowed."""
        if value is None and self.none_ok:
            return
        ok = not isinstance(value, bool) or self.type is bool
        if self.type is float:
            ok = ok and isinstance(value, (int, float))
        else:
            ok = ok and isinstance(value, self.type)
        if ok and self.choices is not None:
            ok = value in self.choices
        if ok and self.low is not None:
            ok = value >= self.low
        if ok and self.high is not None:
            ok = value <= self.high
        if not ok:
            raise ConfigError(f"Stage.{self.name}: got {value!r}; allowed: {self.allowed()}")


@dataclass
class MethodSpec:
    """What one scorer, selector or reducer is and needs.

    ``captures``: a set of :data:`CAPTURES`, or a function of the method's options returning one.
    ``query_dependent``: reads the text (bool, or a function of the options). ``where``: subset of :data:`WHERE`.
    ``batched``: a selector's form that runs every item of a batch at once (see ``selection.mmr_batched``).
    ``needs_features``: a selector that needs the stage's visual features. ``validate``: cross-option checks.
    """

    name: str
    kind: str
    fn: Callable
    options: tuple[Option, ...] = ()
    captures: frozenset[str] | Callable[..., set[str]] = frozenset()
    query_dependent: bool | Callable[..., bool] = False
    where: frozenset[str] = frozenset(WHERE)
    modalities: frozenset[str] = frozenset(MODALITIES)
    batched: Callable | None = None
    needs_features: bool = False
    validate: Callable[..., None] | None = None
    summary: str = ""
    _option_names: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._option_names = frozenset(o.name for o in self.options)
        if self.kind not in KINDS:
            raise RegistrationError(f"MethodSpec.kind: {self.kind!r}; allowed: {KINDS}")
        bad = set(self.where) - set(WHERE) | set(self.modalities) - set(MODALITIES)
        if not callable(self.captures):
            bad |= set(self.captures) - set(CAPTURES)
        if bad:
            raise RegistrationError(f"MethodSpec {self.name!r}: unknown where/modality/capture values {sorted(bad)}")
        if not self.summary:
            self.summary = first_sentence(self.fn.__doc__ or "")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    @property
    def option_names(self) -> frozenset[str]:
        return self._option_names

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def check(self, options: dict[str, Any]) -> None:
        """Validates this method's share of a stage's options (types, ranges, then cross-option rules)."""
        by_name = {o.name: o for o in self.options}
        for key, value in options.items():
            by_name[key].check(value)
        if self.validate is not None:
            self.validate(**{**self.defaults(), **options})

    def captures_for(self, options: dict[str, Any]) -> set[str]:
        caps = self.captures(**{**self.defaults(), **options}) if callable(self.captures) else self.captures
        return set(caps)

    def is_query_dependent(self, options: dict[str, Any]) -> bool:
        q = self.query_dependent
        return bool(q(**{**self.defaults(), **options}) if callable(q) else q)


class Registry:
    """Name -> :class:`MethodSpec` for one kind; unknown names and double registration raise."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, MethodSpec] = {}

    def register(self, name: str, *, options: Sequence[Option] = (), captures: Any = frozenset(),
                 query_dependent: Any = False, where: Sequence[str] = WHERE, modalities: Sequence[str] = MODALITIES,
                 batched: Callable | None = None, needs_features: bool = False,
                 validate: Callable[..., None] | None = None, summary: str = "") -> Callable[[Callable], Callable]:
        """Decorator: registers ``fn`` under ``name`` with its spec and returns ``fn`` unchanged."""

        def deco(fn: Callable) -> Callable:
            self.add(MethodSpec(name, self.kind, fn, tuple(options),
                                captures if callable(captures) else frozenset(captures), query_dependent,
                                frozenset(where), frozenset(modalities), batched, needs_features, validate, summary))
            return fn

        return deco

    def add(self, spec: MethodSpec) -> MethodSpec:
        if spec.kind != self.kind:
            raise RegistrationError(f"a {spec.kind} spec cannot go in the {self.kind} registry")
        if spec.name in self._items:
            raise RegistrationError(f"{self.kind} {spec.name!r} registered twice")
        self._items[spec.name] = spec
        return spec

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    @contextlib.contextmanager
    def temporary(self, name: str, fn: Callable, **spec: Any) -> Iterator[MethodSpec]:
        """Registers ``fn`` for the duration of a ``with`` block (private probes of calibration and benchmarks)."""
        self.register(name, **spec)(fn)
        try:
            yield self._items[name]
        finally:
            self.remove(name)

    def get(self, name: str, field: str | None = None) -> MethodSpec:
        if name not in self._items:
            raise ConfigError(f"{field or self.kind}: unknown {self.kind} {name!r}; allowed: "
                              f"{', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(n for n in self._items if not n.startswith("_"))

    def specs(self) -> list[MethodSpec]:
        return [self._items[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._items


SCORERS = Registry("scorer")
SELECTORS = Registry("selector")
REDUCERS = Registry("reducer")
REGISTRIES = {"scorer": SCORERS, "selector": SELECTORS, "reducer": REDUCERS}
