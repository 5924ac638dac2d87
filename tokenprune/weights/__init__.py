"""Weight-level structured pruning of a VLM's language backbone (MLP channels, KV groups / query heads, blocks,
attention sublayers), calibrated through the whole VLM and exported so stock ``transformers`` loads it."""
from .backbone import Backbone, backbone
from .export import export, load_pruned, prune
from .plan import LayerPlan, WeightPlan, WeightSpec, expected_params, make_plan
from .stats import CalibStats, collect

__all__ = ["Backbone", "CalibStats", "LayerPlan", "WeightPlan", "WeightSpec", "backbone", "collect", "expected_params",
           "export", "load_pruned", "make_plan", "prune"]
