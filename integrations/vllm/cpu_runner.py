"""vLLM's multimodal-pruning plumbing (``is_multimodal_pruning_enabled``, which routes image embeddings through the
model's ``recompute_mrope_positions``): what a pruning model sets to ask for it, and the one step vLLM-CPU's model
runner lacks — the GPU runner turns the plumbing on after loading, the CPU runner does not; this backports it."""
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


def request_pruning_plumbing(model, vllm_config) -> None:
    """Asks vLLM to route a pruning model's media rows through its ``recompute_mrope_positions``: the model says it
    prunes, and so does this engine's multimodal config — which vLLM's runner otherwise reports only for
    ``video_pruning_rate > 0`` (patched on this config object alone)."""
    model.is_multimodal_pruning_enabled = True
    mm = vllm_config.model_config.multimodal_config
    object.__setattr__(mm, "is_multimodal_pruning_enabled", lambda: True)
