"""The ``visionzip`` preset against an independent re-implementation of VisionZip's algorithm (Yang et al., CVPR
2025) on transformers' own eager CLIP attention: same kept tokens, same language-model input."""
import pytest
import torch

import tokenprune as tp
from tokenprune.testing.tiny import make_inputs

from ..conftest import item, tiny


def reference_visionzip(model, pixel_values: torch.Tensor, dominant: int, contextual: int):
    """Per image: (kept indices, their rows for the language model). Dominant tokens: the ``dominant`` patches the
    [CLS] query attends to most at the feature layer (eager attention weights, summed over heads); targets: every
    ``max(1, n // contextual)``-th of the ``n`` remaining patches, the first ``contextual``; every other patch joins
    its most cosine-similar target, and a target becomes the mean of its group. tokenprune merges the projector's
    outputs (its documented deviation from the paper, which merges the tower's hidden states with key similarity)."""
    tower = model.model.vision_tower
    out = tower(pixel_values, output_attentions=True, output_hidden_states=True)
    layer = model.config.vision_feature_layer % len(out.hidden_states) - 1  # the layer producing the features
    cls = out.attentions[layer][:, :, 0, 1:].sum(1)  # [images, patches]
    feats = model.model.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output
    result = []
    for att, x in zip(cls, feats):
        x = x.reshape(-1, x.shape[-1])
        dom = set(torch.topk(att, dominant).indices.tolist())
        rest = [i for i in range(att.numel()) if i not in dom]
        targets = rest[:: max(1, len(rest) // contextual)][:contextual]
        others = [i for i in rest if i not in targets]
        unit = torch.nn.functional.normalize(x, dim=-1)
        join = (unit[others] @ unit[targets].T).argmax(1).tolist()
        rows = {i: x[i] for i in dom}
        for t, tok in enumerate(targets):
            group = [tok] + [o for o, j in zip(others, join) if j == t]
            rows[tok] = x[group].mean(0)
        kept = sorted(rows)
        result.append((kept, torch.stack([rows[i] for i in kept])))
    return result


@pytest.mark.parametrize("keep,contextual", [(8, 3), (6, 2), (5, 1)])
def test_visionzip_equals_independent_reference(keep, contextual):
    model = tiny("llava", "eager")
    inputs = make_inputs("llava", model, [[item("llava"), item("llava")]])
    ref = reference_visionzip(model, inputs["pixel_values"], keep - contextual, contextual)
    seen = {}

    def grab(module, args, kwargs):
        seen.setdefault("embeds", kwargs["inputs_embeds"])
    with tp.pruned(model, "visionzip", keep=keep, contextual=contextual) as h:
        # registered after tokenprune's own hooks: sees the reduced sequence
        hook = model.model.language_model.register_forward_pre_hook(grab, with_kwargs=True)
        try:
            model(**inputs)
        finally:
            hook.remove()
        kept = h.stats.stages[0].kept_indices[0]
    assert [sorted(k) for k in kept] == [k for k, _ in ref]
    # one row, no padding: the language model reads the prompt with each image's kept rows in order
    image = inputs["input_ids"][0] == model.config.image_token_id
    visual = torch.cat([rows for _, rows in ref])
    keep_mask = ~image
    per_image = int(image.sum()) // len(ref)
    keep_mask[image.nonzero().flatten()[[i + per_image * n for n, (k, _) in enumerate(ref) for i in k]]] = True
    embeds = seen["embeds"][0]
    assert embeds.shape[0] == int(keep_mask.sum())
    is_visual = image[keep_mask]
    torch.testing.assert_close(embeds[is_visual], visual, atol=1e-5, rtol=1e-4)
    text = model.get_input_embeddings()(inputs["input_ids"][0][~image])
    torch.testing.assert_close(embeds[~is_visual], text)
