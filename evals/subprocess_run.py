"""Benchmarks that run each configuration in its own process (a fresh vLLM engine per run): the worker prints one
``RESULT <json>`` line, the parent parses it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

PREFIX = "RESULT "


def emit(result: dict[str, Any]) -> None:
    """The worker's side: print the result where :func:`run_worker` finds it."""
    print(PREFIX + json.dumps(result), flush=True)


def run_worker(module: str, args: list[str], env: dict[str, str], config: str | None, what: str) -> dict[str, Any]:
    """Runs ``python -m module args`` with ``env`` on top of this environment (offline hub; a tokenprune vLLM config
    only when ``config`` is given) and returns its last ``RESULT``; exits with the child's output tails if it fails."""
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    full.pop("TOKENPRUNE_VLLM_CONFIG", None)
    if config is not None:
        full["TOKENPRUNE_VLLM_CONFIG"] = config
    p = subprocess.run([sys.executable, "-m", module, *args], env=full, capture_output=True, text=True)
    lines = [line for line in p.stdout.splitlines() if line.startswith(PREFIX)]
    if p.returncode or not lines:
        raise SystemExit(f"vLLM run failed ({what}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len(PREFIX):])
