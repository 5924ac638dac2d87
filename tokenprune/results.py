"""Writing results files: atomically, so an interrupted run never leaves a half-written file that looks complete."""
from __future__ import annotations

import json
import os
from typing import Any


def write_json(path: str | None, result: dict[str, Any], indent: int = 1) -> dict[str, Any]:
    """Writes ``result`` to ``path`` (when given) under a ``.partial`` name, then renames it; returns ``result``."""
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path + ".partial", "w") as f:
            json.dump(result, f, indent=indent)
        os.replace(path + ".partial", path)
    return result


def model_identity(path: str, name: str | None = None) -> dict[str, str]:
    """What a results file records about a model folder: a name and a content hash of its weights (sha256 of the
    ``*.safetensors`` files in name order, first 16 hex digits) — never a local path."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            with open(os.path.join(path, f), "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return {"name": name or os.path.basename(os.path.normpath(path)), "weights_sha256": h.hexdigest()[:16]}
