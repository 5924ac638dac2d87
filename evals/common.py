"""Small helpers the evaluation scripts share."""
from __future__ import annotations

import json
import os
from typing import Any


def write_json(out: str | None, result: dict[str, Any]) -> dict[str, Any]:
    """Writes ``result`` to ``out`` (when given) atomically, so a crash never leaves a half-written file; returns it."""
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out + ".partial", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(out + ".partial", out)
    return result
