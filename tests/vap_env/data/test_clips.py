"""ClipDataset windows: shapes, ranges, worker sharding, seeded shuffling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vap_env.data import ClipConfig, ClipDataset, iter_episodes


def test_clip_shapes_and_ranges(rt1_dataset_dir) -> None:
    cfg = ClipConfig(chunk_frames=4, height=64, width=80)
    items = list(ClipDataset(rt1_dataset_dir, "train", cfg))
    assert len(items) == 3 * 2  # 3 episodes of 9 frames: windows at 0 and 4
    item = items[0]
    assert item["context"].shape == (3, 64, 80) and item["context"].dtype == torch.float32
    assert item["frames"].shape == (4, 3, 64, 80)
    assert item["skeleton"].shape == (5, 3, 64, 80)
    assert item["actions"].shape == (4, 7)
    assert item["gripper_mask"].shape == (5, 64, 80) and item["gripper_mask"].dtype == torch.bool
    assert isinstance(item["instruction"], str) and item["instruction"]
    for key in ("context", "frames", "skeleton"):
        assert item[key].min() >= -1.0 and item[key].max() <= 1.0
    # Skeleton frames are black except the drawn gripper.
    assert (item["skeleton"] > -1.0).any() and (item["skeleton"] == -1.0).float().mean() > 0.8
    # The context is the frame before the targets.
    same = [
        i
        for i in items
        if i["episode_id"] == item["episode_id"] and i["start"] == item["start"] + 4
    ]
    if same:
        torch.testing.assert_close(same[0]["context"], item["frames"][-1])


def test_uint8_output_and_batching(droid_dataset_dir) -> None:
    cfg = ClipConfig(chunk_frames=8, height=32, width=48, output="uint8", shuffle=False)
    batch = next(iter(DataLoader(ClipDataset(droid_dataset_dir, "train", cfg), batch_size=2)))
    assert batch["frames"].shape == (2, 8, 3, 32, 48) and batch["frames"].dtype == torch.uint8
    assert batch["skeleton"].shape == (2, 9, 3, 32, 48)
    assert batch["actions"].shape == (2, 8, 8)
    assert len(batch["instruction"]) == 2


def _keys(loader) -> list[tuple[str, int]]:
    return [(i["episode_id"], int(i["start"])) for i in loader]


def test_workers_shard_episodes_without_overlap(rt1_dataset_dir) -> None:
    ds = ClipDataset(rt1_dataset_dir, "train", ClipConfig(chunk_frames=4, height=16, width=16))
    single = _keys(DataLoader(ds, batch_size=None, num_workers=0))
    multi = _keys(DataLoader(ds, batch_size=None, num_workers=2))
    assert sorted(single) == sorted(multi) and len(set(multi)) == len(multi) == 6
    # Two processes of a distributed run split the episodes between them.
    parts = [
        _keys(ClipDataset(rt1_dataset_dir, "train", ds.config, rank=r, world_size=2))
        for r in (0, 1)
    ]
    assert not {e for e, _ in parts[0]} & {e for e, _ in parts[1]}
    assert sorted(parts[0] + parts[1]) == sorted(single)


def test_seeded_shuffle(rt1_dataset_dir) -> None:
    episodes = list(iter_episodes(rt1_dataset_dir, "train"))
    cfg = ClipConfig(chunk_frames=2, height=16, width=16, seed=3, shuffle_buffer=100)
    ds = ClipDataset(episodes, config=cfg)
    first, again = _keys(ds), _keys(ds)
    assert first == again  # same seed and epoch -> same order
    orders = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        orders.add(tuple(_keys(ds)))
    assert len(orders) > 1 and all(sorted(o) == sorted(first) for o in orders)
    unshuffled = _keys(
        ClipDataset(episodes, config=ClipConfig(chunk_frames=2, height=16, width=16, shuffle=False))
    )
    assert unshuffled == sorted(unshuffled)


def test_bad_config_names_the_value() -> None:
    with pytest.raises(ValueError, match="output = 'half'"):
        ClipConfig(output="half")
    with pytest.raises(ValueError, match="rank = 2"):
        ClipDataset([], rank=2, world_size=2)


def test_windows_are_full_and_aligned_with_their_actions(rt1_dataset_dir) -> None:
    episodes = list(iter_episodes(rt1_dataset_dir, "train"))  # 3 episodes of 9 frames
    cfg = ClipConfig(chunk_frames=4, stride=1, height=16, width=16, shuffle=False, masks=False)
    items = list(ClipDataset(episodes, config=cfg))
    # s + K < T: starts 0..4 for T = 9, K = 4
    assert sorted({int(i["start"]) for i in items}) == [0, 1, 2, 3, 4]
    assert len(items) == 3 * 5
    by_id = {e.episode_id: e for e in episodes}
    for item in items:
        s = int(item["start"])
        assert item["frames"].shape[0] == 4 and item["skeleton"].shape[0] == 5
        actions = by_id[item["episode_id"]].actions[s : s + 4]
        torch.testing.assert_close(item["actions"], torch.from_numpy(actions.astype(np.float32)))
