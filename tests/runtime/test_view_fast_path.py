"""build_view's one-item-per-row path builds exactly the tensors of the general path."""
import dataclasses

import pytest
import torch

import tokenprune.runtime.stage as stage_mod
from tokenprune.runtime.items import MediaItem
from tokenprune.runtime.stage import build_view


def _item(row: int, start: int, m: int, grid, vision: bool, padding: bool, alive=None) -> MediaItem:
    g = torch.Generator().manual_seed(row)
    alive = torch.arange(m) if alive is None else alive
    return MediaItem(row, "image", torch.arange(start, start + alive.numel()), alive, m,
                     vision=torch.rand(m, generator=g) if vision else None,
                     padding=(torch.rand(m, generator=g) > 0.7) if padding else None, grid=grid)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("grid", [(1, 3, 4), (2, 2, 3), None])
@pytest.mark.parametrize("extras", [(False, False), (True, True), (True, False)])
def test_one_item_rows_equal_general_path(rows, grid, extras, monkeypatch):
    n, m = 20, 12
    alive = torch.tensor([0, 2, 3, 5, 7, 8, 9, 11])  # a later stage: some tokens already pruned
    images = [[_item(r, 2 + r, m, grid, *extras, alive=alive)] for r in range(rows)]
    hidden, valid = torch.randn(rows, n, 6), torch.ones(rows, n, dtype=torch.bool)
    ks = [[3 + r] for r in range(rows)]
    fast = build_view(hidden, valid, images, ks, None, torch.Generator(), None)
    monkeypatch.setattr(stage_mod, "_one_item_rows", lambda *a: None)
    general = build_view(hidden, valid, images, ks, None, torch.Generator(), None)
    for f in dataclasses.fields(fast):
        a, b = getattr(fast, f.name), getattr(general, f.name)
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b), f.name
    assert torch.equal(fast.features, general.features)


def test_items_of_different_sizes_take_the_general_path():
    images = [[_item(0, 1, 5, None, False, False)], [_item(1, 1, 4, None, False, False)]]
    assert stage_mod._one_item_rows(images, [[2], [2]], torch.device("cpu")) is None
    two = [[_item(0, 1, 5, None, False, False), _item(0, 8, 5, None, False, False)]]
    assert stage_mod._one_item_rows(two, [[2, 2]], torch.device("cpu")) is None


def test_fast_path_defers_what_a_scorer_does_not_read():
    """The per-token fields are built on first read, once, from the items as they were when the view was built."""
    from tokenprune.scoring.view import Deferred

    m = 12
    images = [[_item(0, 2, m, (1, 3, 4), False, False)]]
    hidden, valid = torch.randn(1, 20, 6), torch.ones(1, 20, dtype=torch.bool)
    view = build_view(hidden, valid, images, [[5]], None, torch.Generator(), None)
    lazy = ("visual_mask", "item_id", "local_index", "item_len", "budget", "frame", "cell", "grid_hw")
    assert all(isinstance(view.__dict__["_v_" + name], Deferred) for name in lazy)
    images[0][0].alive = torch.tensor([1, 4])  # what a later compaction does to the item: the view keeps its tokens
    assert torch.equal(view.frame, torch.zeros(1, m, dtype=torch.long))
    assert torch.equal(view.cell, torch.arange(m)[None])
    assert view.__dict__["_v_cell"] is view.cell  # resolved once, then kept
    assert torch.equal(view.budget, torch.full((1, m), 5)) and torch.equal(view.grid_hw[0, 0], torch.tensor([3, 4]))
    assert isinstance(view.__dict__["_v_item_id"], Deferred)  # unread: still not built


@pytest.fixture
def first_rows():
    from tokenprune.registry import REDUCERS

    with REDUCERS.temporary("_first_rows", lambda hidden, keep_idx, pruned_idx, scores: hidden[:keep_idx.numel()]):
        yield


@pytest.mark.parametrize("reducer,opts", [("merge", dict(contextual=2)), ("merge", {}), ("recycle", {}),
                                          ("transform", {}), ("_first_rows", {})])
@pytest.mark.usefixtures("first_rows")
def test_inplace_merge_equals_the_copying_path(reducer, opts):
    """``run_stage(inplace=True)`` (the HF pre-LLM path: the VLM's fresh embeddings) writes the merged rows into the
    caller's tensor and gives exactly what the copying path gives; ``inplace=False`` (the vLLM plugin, a layer's
    input) leaves the caller's tensor untouched. Two images in one row: the first item's writes must not reach the
    second item's rows."""
    from tokenprune import Stage
    from tokenprune.runtime.stage import run_stage

    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(1, 30, 8, generator=g)
    # the first item's positions are consecutive (read as a view), the second's are not (gathered)
    items = [[MediaItem(0, "image", torch.arange(2, 14), torch.arange(12), 12),
              MediaItem(0, "image", torch.arange(15, 27, 2), torch.arange(6), 6)]]
    stage = Stage("pre_llm", keep=4, scorer="norm", selector="visionzip" if opts else "topk", reducer=reducer,
                  **opts)
    expect_first = hidden[0, 2:6].clone()  # what _first_rows returns for the first item
    valid = torch.ones(1, 30, dtype=torch.bool)
    before = hidden.clone()
    copy = run_stage(stage, hidden, valid, items, None, torch.Generator(), None)
    assert torch.equal(hidden, before) and copy.hidden is not hidden
    inplace = run_stage(stage, hidden, valid, items, None, torch.Generator(), None, inplace=True)
    assert inplace.hidden is hidden and torch.equal(inplace.hidden, copy.hidden)
    assert [s.tolist() for s in inplace.selections[0]] == [s.tolist() for s in copy.selections[0]]
    assert not torch.equal(hidden, before)  # the merged rows were written into it
    if reducer == "_first_rows":  # a view of its input: copied before the write, else rows would be overwritten
        kept_pos = items[0][0].pos.index_select(0, inplace.selections[0][0])
        assert torch.equal(inplace.hidden[0, kept_pos], expect_first)
