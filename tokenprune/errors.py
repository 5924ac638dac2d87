"""Exceptions raised by tokenprune. Every user-facing failure is a :class:`TokenPruneError`."""
from __future__ import annotations


class TokenPruneError(Exception):
    """Base class of every error tokenprune raises on purpose."""


class ConfigError(TokenPruneError, ValueError):
    """A configuration value is invalid (names the field and the allowed range)."""


class UnsupportedModelError(TokenPruneError, TypeError):
    """The model family (``config.model_type``) has no registered adapter, or a feature it needs is missing."""


class InputError(TokenPruneError, ValueError):
    """The inputs of a forward/generate call cannot be pruned as configured."""


class AlreadyAttachedError(ConfigError):
    """``apply()`` was called on a model that already carries a tokenprune handle."""


class RegistrationError(TokenPruneError, ValueError):
    """A method or model family was registered inconsistently (twice, or with an invalid spec)."""


class InternalError(TokenPruneError, RuntimeError):
    """An invariant tokenprune checks on itself (or on a method's contract) failed: a bug to report."""
