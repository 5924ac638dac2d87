"""Scorers: pure functions ``score(view: TokenView, **options) -> Tensor[B, V]`` (higher = keep).

Each module registers its scorers in :data:`tokenprune.registry.SCORERS`; adding one is a one-file change
plus an import line here.
"""
from . import attention, basic, debias, vision  # noqa: F401  (registration)
from .view import TokenView

__all__ = ["TokenView"]
