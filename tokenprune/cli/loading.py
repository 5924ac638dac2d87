"""Loading a local model folder for a subcommand, with one clear error for everything that can go wrong."""
from __future__ import annotations

import os
from typing import Any

from ..errors import InputError


def load_local(path: str, processor: bool = True) -> tuple[Any, Any]:
    """``(model, processor or None)`` from a ``save_pretrained`` folder, or :class:`InputError` naming ``model``
    (missing folder, unreadable or truncated weights, unknown architecture)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise InputError(f"model: {path!r} is not a saved model folder (no config.json)")
    try:
        model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True).eval()
        proc = AutoProcessor.from_pretrained(path, local_files_only=True) if processor else None
    except Exception as e:  # noqa: BLE001 - transformers/safetensors raise many types for a bad folder
        raise InputError(f"model: cannot load {path!r} ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    return model, proc
