"""A scorer defined outside the package, in one file: registering it is all it takes (see test_method_spec.py)."""
import torch

from tokenprune.registry import SCORERS, Option


@SCORERS.register("test_centre", options=[Option("sharpness", float, 1.0, "how fast scores fall off", low=0.0)],
                  captures={"features"})
def centre_scores(view, *, sharpness: float = 1.0) -> torch.Tensor:
    """Prefers the tokens in the middle of each item's raster order."""
    t = view.local_index.float() / (view.item_len - 1).clamp(min=1).float()
    return -sharpness * (t - 0.5).abs()


@SCORERS.register("test_text_overlap", captures={"lm_attention"}, query_dependent=True)
def text_overlap(view) -> torch.Tensor:
    """A query-dependent scorer (vLLM cannot serve it)."""
    return view.attention("last")
