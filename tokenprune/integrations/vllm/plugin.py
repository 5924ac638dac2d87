"""The ``vllm.general_plugins`` entry point (runs in every vLLM process, the engine core included).

Pruning is enabled by ``TOKENPRUNE_VLLM_CONFIG`` (a config file path, a preset name or inline JSON); unset, the
plugin registers nothing. A bad config raises at start-up, before any request.
"""
from __future__ import annotations

ARCHITECTURES = {
    "LlavaForConditionalGeneration": "tokenprune.integrations.vllm.llava:TokenpruneLlava",
    "Qwen2VLForConditionalGeneration": "tokenprune.integrations.vllm.qwen_vl:TokenpruneQwen2VL",
    "Qwen2_5_VLForConditionalGeneration": "tokenprune.integrations.vllm.qwen_vl:TokenpruneQwen2_5_VL",
}


def register() -> None:
    from .common import config_from_env

    if config_from_env() is None:  # validates the config (ConfigError) when set
        return
    from vllm import ModelRegistry

    for arch, target in ARCHITECTURES.items():
        ModelRegistry.register_model(arch, target)  # idempotent: re-registering the same target is harmless
    from .cpu_runner import enable_mm_pruning_on_cpu

    enable_mm_pruning_on_cpu()  # Qwen-VL (M-RoPE) positions after pruning, on vLLM-CPU
