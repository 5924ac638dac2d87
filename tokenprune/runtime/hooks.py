"""A removable set of module hooks and attribute patches bound to one model instance."""
from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

_MISSING = object()


class HookSet:
    """Registers forward pre-hooks and instance-attribute patches; :meth:`remove` undoes all of them.

    Patches set *instance* attributes (never class attributes, never ``forward`` itself), so accelerate's
    ``_hf_hook``/``forward`` wrapping and other instances of the same class are untouched.
    """

    def __init__(self) -> None:
        self._handles: list[Any] = []
        self._patches: list[tuple[Any, str, Any]] = []

    def pre_hook(self, module: nn.Module, fn: Callable) -> None:
        self._handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))

    def post_hook(self, module: nn.Module, fn: Callable) -> None:
        self._handles.append(module.register_forward_hook(fn))

    def patch(self, obj: Any, name: str, value: Any) -> None:
        previous = obj.__dict__.get(name, _MISSING)
        self._patches.append((obj, name, previous))
        obj.__dict__[name] = value  # bypasses nn.Module.__setattr__: no submodule/parameter registration

    def remove(self) -> None:
        for h in reversed(self._handles):
            h.remove()
        for obj, name, previous in reversed(self._patches):
            if previous is _MISSING:
                obj.__dict__.pop(name, None)
            else:
                obj.__dict__[name] = previous
        self._handles.clear()
        self._patches.clear()

    def __len__(self) -> int:
        return len(self._handles) + len(self._patches)
