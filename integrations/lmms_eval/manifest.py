"""The ``lmms_eval.models`` entry point: lmms-eval 0.7 builds its model registry from built-in manifests, then from
this group; an exception here is swallowed by lmms-eval (the only symptom is "Model 'tokenprune' not found"), so
this module imports nothing heavy."""
from __future__ import annotations

MODEL_CLASS = "tokenprune.integrations.lmms_eval.model.TokenpruneLMM"


def manifests():  # noqa: ANN201 - returns lmms_eval's ModelManifest
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="tokenprune", simple_class_path=MODEL_CLASS, aliases=("tokenprune_hf",))
