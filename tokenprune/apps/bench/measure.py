"""Timing one configuration: vision, LM prefill, TTFT, decode step, KV-cache bytes, scoring time, FLOPs."""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ...adapters import get_adapter
from ...api import pruned
from ...config import PruneConfig
from ...flops import prefill_flops
from ...timing import CpuPeak, median_ms


@dataclass
class Measurement:
    label: str
    batch: int
    visual_tokens: int  # per sample, kept after the last stage
    vision_ms: float
    lm_prefill_ms: float
    ttft_ms: float
    decode_ms_per_token: float
    kv_cache_bytes: int
    lm_flops: int
    stage_ms: float  # time inside pruning stages (q/k recomputation, scoring, selection)
    peak_memory_bytes: int | None  # CUDA: max allocated; CPU: peak RSS above the pre-prefill level

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Timer:
    """Wall time between a module's pre-hook (run first) and its forward hook."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.ms: list[float] = []
        self._t0 = 0.0
        self._device = device
        self._h = [module.register_forward_pre_hook(self._start, prepend=True),
                   module.register_forward_hook(self._stop)]

    def _start(self, *_: Any) -> None:
        _sync(self._device)
        self._t0 = time.perf_counter()

    def _stop(self, *_: Any) -> None:
        _sync(self._device)
        self.ms.append((time.perf_counter() - self._t0) * 1e3)

    def remove(self) -> None:
        for h in self._h:
            h.remove()


def kv_bytes(cache: Any) -> int:
    total = 0
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def measure(model: torch.nn.Module, inputs: dict[str, Any], config: PruneConfig | None, label: str,
            repeats: int = 3, decode_steps: int = 4, context: Any = None) -> Measurement:
    """Median of ``repeats`` prefills after a warm-up, then ``decode_steps`` timed cached decode steps.

    ``context``: an extra context manager held during the measurement (e.g. the eager FastV baseline's hooks)."""
    ad = get_adapter(model)
    device = next(model.parameters()).device
    vision_module = getattr(ad.vlm, "vision_tower", None) or getattr(ad.vlm, "visual")
    stage_ms: list[float] = []
    lm_t, vis_t = _Timer(ad.lm, device), _Timer(vision_module, device)
    handle_ctx = pruned(model, config) if config is not None else None
    extra = context if context is not None else contextlib.nullcontext()
    try:
        extra.__enter__()
        handle = handle_ctx.__enter__() if handle_ctx is not None else None
        if handle is not None:
            handle.on_stage(lambda timing: stage_ms.append(timing.ms))
        with torch.no_grad():
            model(**inputs, use_cache=True)  # warm-up
            lm_t.ms.clear(), vis_t.ms.clear(), stage_ms.clear()
            cpu_peak = CpuPeak()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            else:
                cpu_peak.start()
            ttft = []
            for _ in range(repeats):
                _sync(device)
                t = time.perf_counter()
                out = model(**inputs, use_cache=True)
                out.logits[:, -1].argmax(-1)
                _sync(device)
                ttft.append((time.perf_counter() - t) * 1e3)
            peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else cpu_peak.bytes()
            cache = out.past_key_values
            kv = kv_bytes(cache)
            tok = out.logits[:, -1:].argmax(-1)
            mask = inputs["attention_mask"]
            steps = []
            b, seen = mask.shape
            for _ in range(decode_steps):
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
                pos = ad.decode_position_ids(seen, 1, mask, b, device)  # what generate() would pass
                seen += 1
                _sync(device)
                t = time.perf_counter()
                out = model(input_ids=tok, attention_mask=mask, position_ids=pos, past_key_values=cache,
                            use_cache=True)
                _sync(device)
                steps.append((time.perf_counter() - t) * 1e3)
                tok = out.logits[:, -1:].argmax(-1)
        stats = handle.stats if handle is not None else None
    finally:
        lm_t.remove()
        vis_t.remove()
        if handle_ctx is not None:
            handle_ctx.__exit__(None, None, None)
        extra.__exit__(None, None, None)
    n = int(inputs["attention_mask"][0].sum())
    dense_flops = prefill_flops([n] * ad.num_layers, ad.text_config) * inputs["input_ids"].shape[0]
    visual = sum(int((inputs["input_ids"][0] == t).sum()) for t in ad.visual_token_ids().values())
    return Measurement(
        label=label, batch=inputs["input_ids"].shape[0],
        visual_tokens=stats.stages[-1].kept[0] if stats is not None else visual,
        vision_ms=statistics.median(vis_t.ms[:repeats]), lm_prefill_ms=statistics.median(lm_t.ms[:repeats]),
        ttft_ms=statistics.median(ttft), decode_ms_per_token=statistics.median(steps) if steps else 0.0,
        kv_cache_bytes=kv, lm_flops=sum(stats.flops_pruned) if stats is not None else dense_flops,
        stage_ms=statistics.median(stage_ms) if stage_ms else 0.0, peak_memory_bytes=peak)


def time_lm(model: torch.nn.Module, batch: int, n: int, repeats: int = 3) -> float:
    """Median ms of the bare language model (no tokenprune attached) on ``batch`` rows of ``n`` random embeddings:
    what a prompt that was this short from the start costs on this hardware — the speedup pruning can reach here."""
    ad = get_adapter(model)
    p = next(model.parameters())
    g = torch.Generator(device=p.device).manual_seed(0)
    embeds = torch.randn(batch, n, ad.text_config.hidden_size, generator=g, device=p.device, dtype=p.dtype)
    mask = torch.ones(batch, n, dtype=torch.long, device=p.device)
    with torch.no_grad():
        return median_ms(lambda: ad.lm(inputs_embeds=embeds, attention_mask=mask, use_cache=True), repeats)
