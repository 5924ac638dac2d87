"""The vLLM plugin's LLaVA position bookkeeping (pure tensor code, no vLLM needed): admission positions, kept rows
placed at their image's dense start plus their index — in one step, in chunks, after a prefix-cache hit."""
import pytest
import torch

from tokenprune.errors import InternalError

from tokenprune.integrations.vllm.positions import (admission_positions, index_channels, kept_positions,
                                                    mrope_admission_positions, split_index)

IMG = 9


def prompt(kept: int, images: int = 2) -> list[int]:
    """BOS, text, image, text, image, text (``kept`` placeholders per image)."""
    ids = [1, 5, 6]
    for _ in range(images):
        ids += [IMG] * kept + [7, 8]
    return ids


def dense_reference(ids: list[int], kept_index: list[list[int]], dense: int) -> list[int]:
    """Positions the unpruned prompt gives the surviving tokens (built token by token)."""
    out, pos, img = [], 0, 0
    i = 0
    while i < len(ids):
        if ids[i] == IMG:
            out += [pos + j for j in kept_index[img]]
            pos += dense
            i += len(kept_index[img])
            img += 1
        else:
            out.append(pos)
            pos += 1
            i += 1
    return out


def test_index_channels_round_trip_in_bfloat16():
    index = torch.tensor([0, 1, 127, 128, 300, 575, 2879])
    rows = torch.cat([torch.randn(7, 4), index_channels(index, 2880, torch.float32)], 1).to(torch.bfloat16)
    emb, back, kept = split_index(rows)
    assert emb.shape == (7, 4) and back.tolist() == index.tolist() and kept.tolist() == [2880] * 7


def test_admission_then_kept_rows_give_dense_positions():
    dense, kept = 12, 4
    ids = prompt(kept)
    kept_index = [[0, 3, 7, 11], [2, 5, 6, 9]]
    pos, delta = admission_positions(len(ids), [(3, kept), (3 + kept + 2, kept)], dense)
    assert pos.shape == (3, len(ids)) and (pos[0] == pos[1]).all() and (pos[0] == pos[2]).all()
    assert delta == 2 * (dense - kept)  # the next token sits where it would after the dense prompt
    out = kept_positions(torch.tensor(ids), IMG, torch.tensor(sum(kept_index, [])), pos, 0, kept, dense)
    assert out[0].tolist() == dense_reference(ids, kept_index, dense)
    assert int(out[0, -1]) + 1 - len(ids) == delta


def test_chunked_prefill_and_prefix_cache_give_the_same_positions():
    dense, kept = 12, 4
    ids = torch.tensor(prompt(kept))
    kept_index = [[1, 2, 8, 10], [0, 4, 5, 11]]
    flat = torch.tensor(sum(kept_index, []))
    pos, _ = admission_positions(len(ids), [(3, kept), (9, kept)], dense)
    expect = dense_reference(ids.tolist(), kept_index, dense)
    # chunks of 5 tokens: each call brings the rows of the placeholders inside [computed, computed + 5)
    cur = pos
    for start in range(0, len(ids), 5):
        slots = [i for i in range(start, min(start + 5, len(ids))) if ids[i] == IMG]
        first = int((ids[:start] == IMG).sum())
        if slots:
            cur = kept_positions(ids, IMG, flat[first:first + len(slots)], cur, start, kept, dense)
    assert cur[0].tolist() == expect
    # prefix cache covered the first image: only the second image's rows arrive
    cur = kept_positions(ids, IMG, flat[kept:], pos, 9, kept, dense)
    assert cur[0, 9:].tolist() == expect[9:]


def test_bad_counts_raise():
    ids = torch.tensor(prompt(4, images=1))
    pos, _ = admission_positions(len(ids), [(3, 4)], 12)
    with pytest.raises(RuntimeError, match="multiple"):
        kept_positions(ids, IMG, torch.arange(4), pos, 0, 3, 12)
    with pytest.raises(RuntimeError, match="open placeholders"):
        kept_positions(ids, IMG, torch.arange(5), pos, 0, 4, 12)
    with pytest.raises(InternalError, match="placeholders"):
        admission_positions(len(ids), [(3, 4)], 3)


def test_mrope_admission_positions_keep_text_at_dense_positions():
    from tokenprune.integrations.vllm.positions import mrope_admission_positions

    # text(2) image 1×2×3 (6 tokens) text(3) image 1×2×2 (4 tokens) text(1)
    dense, delta = mrope_admission_positions(16, [(2, 6, 1, 2, 3, 1.0), (11, 4, 1, 2, 2, 1.0)])
    assert dense[:, :2].tolist() == [[0, 1]] * 3
    assert dense[:, 2:8].tolist() == [[2] * 6, [2, 2, 2, 3, 3, 3], [2, 3, 4, 2, 3, 4]]
    assert dense[:, 8:11].tolist() == [[5, 6, 7]] * 3  # after an image: its start + max(t, h, w)
    assert dense[:, 15].tolist() == [10] * 3 and delta == 11 - 16
    # the same prompt with 3 and 2 placeholders: every text token keeps its dense position, and the delta
    pruned, pdelta = mrope_admission_positions(11, [(2, 3, 1, 2, 3, 1.0), (8, 2, 1, 2, 2, 1.0)])
    text_dense = [0, 1, 8, 9, 10, 15]
    text_pruned = [0, 1, 5, 6, 7, 10]
    assert pruned[:, text_pruned].tolist() == dense[:, text_dense].tolist()
    assert 11 + pdelta == 16 + delta  # the first generated token sits where it would after the dense prompt
    # a video's temporal positions scale with t_factor (Qwen2.5-VL)
    video, _ = mrope_admission_positions(4, [(0, 4, 2, 1, 2, 2.0)])
    assert video[0].tolist() == [0, 0, 2, 2]
    with pytest.raises(InternalError, match="placeholders"):
        mrope_admission_positions(10, [(0, 7, 1, 2, 3, 1.0)])


def _qwen_prompt(pad: int, kept: int, vs: int = 152, img: int = 150, ve: int = 153) -> list[int]:
    return [5] * (2 + pad) + [vs] + [img] * kept + [ve] + [6] * 4


@pytest.mark.parametrize("chunk", [1, 3, 5, 8])
@pytest.mark.parametrize("pad", range(8))
def test_recompute_media_positions_at_every_boundary(chunk, pad):
    """Chunked prefill (or a prefix-cache hit: the first step starts at ``num_computed``) with the step boundary at
    every offset around ``<|vision_start|>``: the positions end equal to placing every kept row at once."""
    from tokenprune.integrations.vllm.positions import recompute_media_positions

    rel = torch.tensor([[0, 0, 1], [0, 1, 0], [0, 2, 3], [0, 3, 3]])  # kept (t, h, w) of a 1x4x4 image
    ids = torch.tensor(_qwen_prompt(pad, len(rel)))
    offset = 3 + pad
    pos, delta = mrope_admission_positions(len(ids), [(offset, len(rel), 1, 4, 4, 1.0)])
    rows = torch.cat([rel.float(), torch.full((len(rel), 1), 4.0)], 1)
    expect = pos.clone()
    expect[:, offset:offset + len(rel)] = (offset + rel).T
    for start in range(0, len(ids), chunk) if chunk > 1 else [0]:
        step = range(start, min(start + chunk, len(ids))) if chunk > 1 else range(len(ids))
        mine = [j - offset for j in step if offset <= j < offset + len(rel)]
        pos, d = recompute_media_positions(ids, [rows[mine]] if mine else [], pos, start, (150, 151))
    assert torch.equal(pos, expect)
    assert d == delta == int(expect.max()) + 1 - len(ids)


def test_recompute_media_positions_refuses_extra_rows():
    from tokenprune.integrations.vllm.positions import recompute_media_positions

    ids = torch.tensor(_qwen_prompt(0, 2))
    pos, _ = mrope_admission_positions(len(ids), [(3, 2, 1, 2, 2, 1.0)])
    with pytest.raises(InternalError, match="open placeholders"):
        recompute_media_positions(ids, [torch.zeros(3, 4)], pos, 0, (150, 151))


def test_pruning_metrics_count_and_log(caplog):
    import logging

    from tokenprune import PruneConfig
    from tokenprune.integrations.vllm.common import METRICS, select

    before = METRICS.snapshot()
    cfg = PruneConfig.from_dict({"stages": [{"at": "pre_llm", "keep": 4, "scorer": "norm"}]})
    with caplog.at_level(logging.DEBUG, logger="tokenprune.vllm"):
        rows, index = select(torch.randn(16, 8), cfg)
    after = METRICS.snapshot()
    assert rows.shape[0] == 4 and index.numel() == 4
    assert (after["items"] - before["items"], after["visual_tokens_in"] - before["visual_tokens_in"],
            after["visual_tokens_kept"] - before["visual_tokens_kept"]) == (1, 16, 4)
    assert "16 visual tokens -> 4 kept" in caplog.text
