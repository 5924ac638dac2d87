"""Capturing what scorers need from the vision side: per-item token counts, vision attention, padded canvas."""
from __future__ import annotations

import functools
from typing import Any

import torch

from ..errors import InputError


class FeatureCapture:
    """Mixin of :class:`~tokenprune.runtime.engine.Runtime`: wraps ``get_*_features`` and keeps, per item, what the
    stages need. Records travel with the feature outputs, so generate()'s precomputed ``mm_encoder_outputs``
    (regrouped per sample for beams) are followed. Expects ``adapter``, ``_captures`` and ``local`` (a
    :class:`~tokenprune.runtime.state.CallContext`) on the instance."""

    adapter: Any
    _captures: set[str]
    vflow_threshold: float
    zoo_options: tuple
    local: Any

    def _wrap_features(self, modality: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.local.in_features:  # Qwen3-VL's get_video_features calls get_image_features: record once
                return fn(*args, **kwargs)
            self.local.vision_block_input = None
            self.local.projections = {}
            self.local.flow_blocks = []
            self.local.flow_grid = kwargs.get(f"{modality}_grid_thw", args[1] if len(args) > 1 else None)
            self.local.in_features = True
            try:
                out = fn(*args, **kwargs)
            finally:
                self.local.in_features = False
            pixels = kwargs.get(f"pixel_values{'_videos' if modality == 'video' else ''}", args[0] if args else None)
            grid = kwargs.get(f"{modality}_grid_thw", args[1] if len(args) > 1 else None)
            projections, self.local.projections = self.local.projections, None
            rec = self._feature_record(modality, out, pixels, grid, projections)
            # generate() computes features before the first forward and passes them as mm_encoder_outputs:
            # the record travels with them
            out.__dict__["_tokenprune_record"] = rec
            if self.local.pending is not None:
                self._add_record(modality, rec)
            return out

        return wrapper

    def _capture_vision_block(self, module: Any, args: tuple, kwargs: dict) -> None:
        self.local.vision_block_input = (args[0] if args else kwargs["hidden_states"], kwargs)

    def _capture_projection(self, name: str, module: Any, args: tuple, output: torch.Tensor) -> None:
        if self.local.in_features and self.local.projections is not None:
            self.local.projections[name] = output

    def _capture_flow_block(self, index: int, module: Any, args: tuple, kwargs: dict) -> None:
        if self.local.in_features and self.local.flow_blocks is not None:
            hidden = args[0] if args else kwargs["hidden_states"]
            with torch.no_grad():
                self.local.flow_blocks.append(self.adapter.flow_block(index, module, hidden, kwargs,
                                                                      self.local.flow_grid))

    @staticmethod
    def _require_aligned(items: list[torch.Tensor] | None, counts: list[int], what: str) -> None:
        """Raises unless ``items`` holds one value per visual token of each item."""
        if items is None or [x.numel() for x in items] != counts:
            raise InputError(f"{what} cannot be aligned with the visual tokens (needs a single int "
                             f"vision_feature_layer and unpacked features, computed by the model under this handle)")

    def _feature_record(self, modality: str, out: Any, pixel_values: Any = None, grid: Any = None,
                        projections: dict[str, torch.Tensor] | None = None) -> dict:
        """Per-item token counts and, when a scorer needs them, vision attention and padded-canvas masks.
        ``projections``: vision projection outputs captured during this very features call (else recomputed)."""
        counts = self.adapter.feature_counts(out)
        rec: dict[str, Any] = {"counts": counts, "padding": None, "vision": None, "flow": None,
                               "keys": self._item_keys(out),
                               "grids": self.adapter.item_grids(counts, grid, modality, pixel_values)}
        if "padding" in self._captures and modality == "image" and pixel_values is not None:
            pad = self.adapter.padding_tokens(pixel_values)
            if pad is not None and [p.numel() for p in pad] == counts:
                rec["padding"] = pad
        if "vision_attention" in self._captures:
            with torch.no_grad():
                att = self.adapter.cls_attention(out, grid, self.local.vision_block_input, projections)
            self._require_aligned(att, counts, f"{modality}: vision-tower attention")
            rec["vision"] = att
        if "vision_flow" in self._captures:
            with torch.no_grad():
                flow = self.adapter.vision_flow(out, grid, self.local.flow_blocks)
            if flow is None or [f["vnorm"].shape[-1] for f in flow] != counts:
                raise InputError(f"{modality}: the vision tower's information flow cannot be aligned with the visual "
                                 f"tokens (needs a single int vision_feature_layer, the 'default' feature strategy "
                                 f"and features computed by the model under this handle)")
            rec["flow"] = flow
        if "vision_global" in self._captures:
            with torch.no_grad():
                glob = self.adapter.vision_global(out, grid, self.local.vision_block_input, self.vflow_threshold,
                                                  projections)
                ent = self.adapter.patch_entropies(pixel_values, grid) if pixel_values is not None else None
            self._require_aligned(glob, counts, f"{modality}: vision-tower attention")
            if ent is None or [e.numel() for e in ent] != counts:
                ent = [torch.zeros_like(g) for g in glob]  # no pixels to read (precomputed features): alpha adds 0
            rec["flow"] = [dict(f, **{"global": g, "entropy": e})
                           for f, g, e in zip(rec["flow"] or [{}] * len(glob), glob, ent)]
        if "projector_sensitivity" in self._captures:
            directions, eps, seed = self.zoo_options
            with torch.no_grad():
                sens = self.adapter.projector_sensitivity(out, directions, eps, seed)
            if sens is None or [x.numel() for x in sens] != counts:
                raise InputError(f"{modality}: the projector's inputs cannot be aligned with the visual tokens (needs "
                                 f"a single int vision_feature_layer and features computed under this handle)")
            rec["flow"] = [dict(f, sensitivity=x) for f, x in zip(rec["flow"] or [{}] * len(sens), sens)]
        return rec

    @staticmethod
    def _item_keys(out: Any) -> list[tuple[int, tuple]]:
        feats = getattr(out, "pooler_output", out)
        items = list(feats) if isinstance(feats, (list, tuple)) or feats.dim() == 3 else [feats]
        return [(t.data_ptr(), tuple(t.shape)) for t in items]

    def _record_for(self, modality: str, out: Any) -> dict:
        """The record of precomputed features, following generate()'s regrouping of items (beams,
        num_return_sequences repeat each sample's items): items are matched by their tensor storage."""
        rec = out.__dict__.get("_tokenprune_record")
        if rec is None:
            return self._feature_record(modality, out)
        where = {k: i for i, k in enumerate(rec["keys"])}
        keys = self._item_keys(out)
        if not all(k in where for k in keys):
            return self._feature_record(modality, out)
        pick = lambda xs: None if xs is None else [xs[where[k]] for k in keys]  # noqa: E731
        return {"counts": pick(rec["counts"]), "padding": pick(rec["padding"]), "vision": pick(rec["vision"]),
                "grids": pick(rec["grids"]), "flow": pick(rec["flow"]), "keys": keys}

    def _add_record(self, modality: str, rec: dict) -> None:
        p = self.local.pending
        p["counts"].setdefault(modality, []).extend(rec["counts"])
        for key in ("padding", "vision", "grids", "flow"):
            items = rec[key] if rec[key] is not None else [None] * len(rec["counts"])
            p[key].setdefault(modality, []).extend(items)

