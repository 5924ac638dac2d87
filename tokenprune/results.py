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
