"""``tokenprune info``: the family table, the presets and every registered method with what its spec declares."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("info", help="list model families, presets and methods (with what each needs)")


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def run(args: argparse.Namespace, console: Console) -> int:
    from ..adapters import ADAPTERS
    from ..integrations.vllm.common import why_not_servable
    from ..presets import PRESETS
    from ..registry import REGISTRIES

    t = Table(title="Model families (config.model_type)")
    for col in ("model_type", "transformers class", "positions", "modalities", "[CLS] attention", "vLLM plugin",
                "stock head pruning"):
        t.add_column(col)
    for k, a in ADAPTERS.items():
        t.add_row(k, a.hf_class, a.position_scheme(), ", ".join(a.modalities), _yes(a.supports_cls_attention),
                  ", ".join(a.vllm_models) or "-", _yes(a.stock_heads))
    console.print(t)
    p = Table(title="Presets (stages shown for a 32-layer LM; keep= scales the whole schedule)")
    p.add_column("name")
    p.add_column("stages")
    p.add_column("description")
    for name in sorted(PRESETS):
        stages = PRESETS[name].stages(32)
        p.add_row(name, "; ".join(", ".join(f"{k}={v}" for k, v in s.items()) for s in stages),
                  PRESETS[name].description)
    console.print(p)
    m = Table(title="Methods (from their specs)")
    for col in ("kind", "name", "options", "captures", "query", "where", "vLLM", "summary"):
        m.add_column(col, overflow="fold")
    for kind, reg in REGISTRIES.items():
        for spec in reg.specs():
            opts = ", ".join(f"{o.name}={o.default!r}" for o in spec.options) or "-"
            m.add_row(kind, spec.name, opts, ", ".join(sorted(spec.captures_for({}))) or "-",
                      _yes(spec.is_query_dependent({})), ", ".join(sorted(spec.where)),
                      "yes" if why_not_servable(spec) is None else "no", _short(spec.summary))
    console.print(m)
    return 0


def methods_markdown() -> str:
    """The methods table of ``docs/methods.md``, generated from the registered specs."""
    from ..integrations.vllm.common import why_not_servable
    from ..registry import REGISTRIES

    lines = ["| kind | name | options (default; allowed) | captures | reads the text | where | vLLM | summary |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, reg in REGISTRIES.items():
        for spec in reg.specs():
            opts = "<br>".join(f"`{o.name}={o.default!r}` ({o.allowed()})" for o in spec.options) or "-"
            lines.append(f"| {kind} | `{spec.name}` | {opts} | {', '.join(sorted(spec.captures_for({}))) or '-'} | "
                         f"{'yes' if spec.is_query_dependent({}) else 'no'} | {', '.join(sorted(spec.where))} | "
                         f"{'yes' if why_not_servable(spec) is None else 'no'} | {spec.summary.replace('|', '/').replace('``', '`')} |")
    return "\n".join(lines)
