"""``tokenprune bench``: dense vs pruned latency, KV cache and FLOPs against the ideal, on random-weight geometries."""
