"""Lets PyPI's torchvision import next to the CPU build of torch (a test-environment workaround, see DESIGN §7).

torchvision's wheel is built for CUDA torch; its compiled ops fail to load beside CPU torch 2.13, and its Python
side then registers fake kernels for ``torchvision::nms`` / ``qnms``, which raises "operator torchvision::nms does not
exist". Defining the two schemas first (before ``import torchvision``) lets the import succeed; vLLM's LLaVA and
Qwen-VL paths import torchvision but never call those ops. ``scripts/setup_vllm.sh`` installs a ``.pth`` file that
runs :func:`install` at interpreter start-up, only in the vLLM test environment.
"""
from __future__ import annotations


def install() -> None:
    try:
        import torch
    except Exception:  # pragma: no cover - torch missing: nothing to patch
        return
    for name, schema in (("nms", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"),
                         ("qnms", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")):
        try:
            torch.library.define(f"torchvision::{name}", schema)
        except Exception:
            pass  # already defined (torchvision's own _C loaded) or defined by an earlier call
