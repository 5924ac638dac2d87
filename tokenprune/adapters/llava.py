"""LLaVA-1.5 (``LlavaForConditionalGeneration``: CLIP tower, MLP projector, Llama/Vicuna LM; 1-D RoPE)."""
from __future__ import annotations

from typing import Any

import torch

from ..scoring.vflow import global_query_attention, patch_entropy
from ..scoring.vision import cls_row_attention
from ..scoring.zoo import projector_sensitivity
from .base import Adapter, register


@register
class LlavaAdapter(Adapter):
    model_types = ("llava",)
    hf_class = "LlavaForConditionalGeneration"
    supports_cls_attention = True
    supports_vision_flow = True
    supports_vision_global = True
    supports_projector_sensitivity = True
    vllm_models = {"LlavaForConditionalGeneration": "tokenprune.integrations.vllm.llava:TokenpruneLlava"}

    @staticmethod
    def tiny_config(text: dict[str, Any], ids: dict[str, int]) -> Any:
        import transformers as tf

        clip = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56,
                    patch_size=14, projection_dim=32)
        return tf.LlavaConfig(vision_config=tf.CLIPVisionConfig(**clip), text_config=tf.LlamaConfig(**text),
                              image_token_id=ids["image"], pad_token_id=ids["pad"])

    def _feature_layer(self) -> Any:
        """The CLIP encoder layer whose output the projector reads; ``None`` for a list-valued
        ``vision_feature_layer`` or the embeddings."""
        layer_sel = self.model.config.vision_feature_layer
        if not isinstance(layer_sel, int):
            return None
        memo = self.__dict__.get("_feature_layer_memo")  # (resolved once per setting: walking modules costs ~0.1 ms)
        if memo is not None and memo[0] == layer_sel:
            return memo[1]
        tower = self.vlm.vision_tower
        layers = getattr(tower, "vision_model", tower).encoder.layers
        h = layer_sel % (len(layers) + 1)  # hidden_states[h] is the output of encoder layer h - 1
        layer = layers[h - 1] if h > 0 else None
        self._feature_layer_memo = (layer_sel, layer)
        return layer

    def vision_projection_modules(self) -> dict[str, torch.nn.Module]:
        layer = self._feature_layer()
        return {"q": layer.self_attn.q_proj, "k": layer.self_attn.k_proj} if layer is not None else {}

    def _feature_qk(self, image_outputs: object, projections: dict[str, torch.Tensor] | None,
                    cls_only: bool) -> tuple[Any, torch.Tensor, torch.Tensor] | None:
        """The feature layer's attention module and its q (only the [CLS] row with ``cls_only``) and k projections:
        those captured during the tower's forward, else recomputed from the tower's hidden states (the same ops on
        the same input); ``None`` when neither is available."""
        layer = self._feature_layer()
        if layer is None:
            return None
        attn = layer.self_attn
        if projections and "q" in projections and "k" in projections:
            q, k = projections["q"], projections["k"]
            return attn, (q[:, :1] if cls_only else q), k
        hs = getattr(image_outputs, "hidden_states", None)
        if hs is None:
            return None
        x = layer.layer_norm1(hs[self.model.config.vision_feature_layer % len(hs) - 1])
        return attn, attn.q_proj(x[:, :1] if cls_only else x), attn.k_proj(x)

    def cls_attention(self, image_outputs: object, grid_thw: torch.Tensor | None = None,
                      block_input: object = None,
                      projections: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor] | None:
        found = self._feature_qk(image_outputs, projections, cls_only=True)
        if found is None:
            return None
        attn, q, k = found
        probs = cls_row_attention(q, k, attn.num_heads, attn.scale)
        if self.model.config.vision_feature_select_strategy == "default":
            probs = probs[:, 1:]
        return list(probs)

    def vision_flow(self, image_outputs: object, grid_thw: torch.Tensor | None = None,
                    blocks: list[Any] | None = None) -> list[dict[str, torch.Tensor]] | None:
        """From the tower's hidden states, for each CLIP layer before the one producing the features: per head, the
        [CLS] query's attention logits over the patches and the [CLS] value's over the values (no scale, as FlowCut),
        with the [CLS] column itself (``*_self``, repeated per token), so that the scorer can take the softmax over
        whichever patches survive; and the L1 norm of each patch's head-averaged value."""
        cfg = self.model.config
        hs = getattr(image_outputs, "hidden_states", None)
        if hs is None or not isinstance(cfg.vision_feature_layer, int) or cfg.vision_feature_select_strategy != "default":
            return None
        h = cfg.vision_feature_layer % len(hs)
        tower = self.vlm.vision_tower
        layers = getattr(tower, "vision_model", tower).encoder.layers
        stats: dict[str, list[torch.Tensor]] = {"rel_logit": [], "sem_logit": [], "vnorm": []}
        # the layer producing hs[h] (layer h - 1) reads only the kept tokens in FlowCut; a tower with no layer
        # before it (tiny test towers) is scored on that layer itself
        for i in range(max(h - 1, 1)):
            layer = layers[i]
            attn = layer.self_attn
            x = layer.layer_norm1(hs[i])
            n, t, e = x.shape
            heads = lambda y: y.reshape(n, -1, attn.num_heads, e // attn.num_heads).transpose(1, 2).float()  # noqa
            q, k, v = heads(attn.q_proj(x[:, :1])), heads(attn.k_proj(x)), heads(attn.v_proj(x))  # [n, H, T, d]
            stats["rel_logit"].append((q @ k.transpose(-1, -2))[:, :, 0] * attn.scale)  # [n, H, T]
            stats["sem_logit"].append((v[:, :, :1] @ v.transpose(-1, -2))[:, :, 0])
            stats["vnorm"].append(v.mean(1).abs().sum(-1))  # [n, T]
        out: list[dict[str, torch.Tensor]] = [{} for _ in range(hs[0].shape[0])]
        for name, xs in stats.items():
            full = torch.stack(xs, 1)  # [n, L, (H,) T]
            for d, item in zip(out, full):
                d[name] = item[..., 1:]  # patches; the [CLS] column travels repeated per patch
                if name != "vnorm":
                    d[name.replace("logit", "self")] = item[..., :1].expand_as(item[..., 1:])
        return out

    def vision_global(self, image_outputs: object, grid_thw: torch.Tensor | None, block_input: Any,
                      threshold: float, projections: dict[str, torch.Tensor] | None = None
                      ) -> list[torch.Tensor] | None:
        found = self._feature_qk(image_outputs, projections, cls_only=False)
        if found is None:
            return None
        attn, q, k = found
        n, t, e = k.shape
        heads = lambda y: y.reshape(n, t, attn.num_heads, e // attn.num_heads).transpose(1, 2).float()  # noqa: E731
        probs = (heads(q) @ heads(k).transpose(-1, -2) * attn.scale).softmax(-1).mean(1)
        first = 1 if self.model.config.vision_feature_select_strategy == "default" else 0
        return [global_query_attention(p, threshold)[first:] for p in probs]

    def patch_entropies(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor | None) -> list[torch.Tensor] | None:
        """Each 14x14 patch's grey levels (channel mean, the image min-max scaled to [0, 1]) -> entropy."""
        if pixel_values.dim() != 4:
            return None
        ps = self.vlm.vision_tower.config.patch_size
        grey = pixel_values.float().mean(1, keepdim=True)
        lo = grey.amin((1, 2, 3), keepdim=True)
        grey = (grey - lo) / (grey.amax((1, 2, 3), keepdim=True) - lo).clamp(min=1e-12)
        patches = torch.nn.functional.unfold(grey, kernel_size=ps, stride=ps)  # [N, ps*ps, P]
        ent = [patch_entropy(p.T) for p in patches]
        if self.model.config.vision_feature_select_strategy != "default":
            ent = [torch.cat([e.new_zeros(1), e]) for e in ent]  # the [CLS] token carries no pixels
        return ent

    def projector_sensitivity(self, image_outputs: object, directions: int, eps: float,
                              seed: int) -> list[torch.Tensor] | None:
        """The projector's inputs are the tower's selected hidden states (without [CLS] for the default strategy)."""
        cfg = self.model.config
        hs = getattr(image_outputs, "hidden_states", None)
        if hs is None or not isinstance(cfg.vision_feature_layer, int):
            return None
        x = hs[cfg.vision_feature_layer]
        x = x[:, 1:] if cfg.vision_feature_select_strategy == "default" else x
        gen = torch.Generator(device=x.device).manual_seed(seed)
        proj = self.vlm.multi_modal_projector
        return [projector_sensitivity(proj, xi, directions, eps, gen) for xi in x]

    def padding_tokens(self, pixel_values: torch.Tensor) -> list[torch.Tensor] | None:
        """LLaVA-1.5 pads images to a square with the normalisation mean, i.e. ~0 after normalisation: a patch
        whose pixels are all within 0.03 of 0 is padded canvas (a real image patch is never exactly flat grey)."""
        if pixel_values.dim() != 4:
            return None
        ps = self.vlm.vision_tower.config.patch_size
        patches = torch.nn.functional.unfold(pixel_values.float(), kernel_size=ps, stride=ps)  # [N, 3*ps*ps, P]
        pad = patches.abs().amax(1) <= 0.03
        if self.model.config.vision_feature_select_strategy != "default":
            pad = torch.cat([torch.zeros_like(pad[:, :1]), pad], dim=1)  # the [CLS] token is never padding
        return list(pad)
