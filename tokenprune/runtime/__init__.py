"""Pruning runtime: hooks on one model instance, per-call state, sequence compaction."""
