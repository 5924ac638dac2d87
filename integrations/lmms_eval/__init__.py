"""lmms-eval plugin: the ``tokenprune`` model (any supported family, any pruning config, batched) and offline
ShapesVQA tasks. Registered through the ``lmms_eval.models`` entry point (``manifest.manifests``)."""
