"""Wall-clock helpers shared by the demo, the benchmarks and the eval sweep."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object]) -> float:
    """Milliseconds one call of ``fn`` takes (CUDA synchronised when in use)."""
    _sync()
    t = time.perf_counter()
    fn()
    _sync()
    return (time.perf_counter() - t) * 1e3


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median of ``repeats`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return statistics.median(time_ms(fn) for _ in range(repeats))


def interleaved_ms(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median per name over ``rounds`` rounds that call every function once each, so slow drifts of the machine
    (other load, clocks) hit every variant alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(time_ms(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class CpuPeak:
    """Peak resident memory above the level at ``start()`` (Linux: resets VmHWM via /proc/self/clear_refs).

    ``bytes()`` is None where the kernel offers no resettable peak. A process-level figure: it includes everything the
    process allocates meanwhile (activations, the KV cache, allocator slack), not only tensors."""

    def start(self) -> None:
        self.base = _status_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.ok = self.base is not None
        except OSError:
            self.ok = False

    def bytes(self) -> int | None:
        peak = _status_kib("VmHWM")
        if not getattr(self, "ok", False) or peak is None:
            return None
        return max(0, peak - self.base) * 1024
