"""tokenprune: visual-token pruning for Hugging Face vision-language models."""
from . import fast_diversity, reduce, scoring, selection  # noqa: F401  (registration)
from .api import PruneHandle, apply, pruned
from .config import PruneConfig, Stage
from .errors import AlreadyAttachedError, ConfigError, InputError, TokenPruneError, UnsupportedModelError
from .presets import preset_names
from .stats import PruneStats

__version__ = "0.1.0"

__all__ = [
    "AlreadyAttachedError", "ConfigError", "InputError", "PruneConfig", "PruneHandle", "PruneStats", "Stage",
    "TokenPruneError", "UnsupportedModelError", "apply", "preset_names", "pruned",
]
