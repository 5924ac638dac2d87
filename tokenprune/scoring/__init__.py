"""Scorers: pure functions ``score(view: TokenView, **options) -> Tensor[B, V]`` (higher = keep).

Every module in this package is imported on start-up and registers its scorers in
:data:`tokenprune.registry.SCORERS`, so adding a scorer is a one-file change: drop a module here.
"""
import importlib
import pkgutil

from .view import TokenView

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "view":
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["TokenView"]
