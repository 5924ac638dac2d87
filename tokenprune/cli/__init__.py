"""The ``tokenprune`` command line: one module per subcommand, each with ``add_parser(sub)`` and ``run(args,
console)``. The library raises :class:`~tokenprune.errors.TokenPruneError` naming its parameters; a subcommand's
``FLAGS`` maps those names to its flags, and every error exits 2 with one readable line."""
from __future__ import annotations

import argparse
import importlib
import sys

from rich.console import Console

from ..errors import TokenPruneError

COMMANDS = {"info": "info", "demo": "demo", "calibrate": "calibrate", "bench": "bench", "eval": "eval",
            "prune-weights": "weights", "tune": "tune"}


def _module(cmd: str):  # noqa: ANN202
    return importlib.import_module(f"{__name__}.{COMMANDS[cmd]}")


def error_message(err: TokenPruneError, flags: dict[str, str]) -> str:
    """``err``'s message with a leading library parameter name (``"source: ..."``) shown as the command's flag."""
    msg = str(err)
    head, sep, rest = msg.partition(":")
    if sep and head in flags:
        return f"{flags[head]} ({head}):{rest}"
    return msg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokenprune", description="Visual-token pruning for HF VLMs")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in COMMANDS:
        _module(cmd).add_parser(sub)
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=130)
    module = _module(args.cmd)
    try:
        if min(getattr(args, "repeats", 1), getattr(args, "new_tokens", 1), getattr(args, "samples", 1)) < 1:
            raise TokenPruneError("--repeats, --new-tokens and --samples must be >= 1")
        return module.run(args, console)
    except TokenPruneError as e:
        console.print(f"[red]error:[/red] {error_message(e, getattr(module, 'FLAGS', {}))}")
        return 2
