"""Clip caches: the same windows as the RLDS directory, without TensorFlow or pybullet at read time."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vap_env.data import ClipConfig, ClipDataset
from vap_env.data.clip_cache import ClipCache, write_clip_cache

CFG = ClipConfig(
    chunk_frames=8,
    height=32,
    width=40,
    stride=4,
    shuffle=False,
    output="uint8",
    masks=False,
    skeleton_from_ground_truth=True,
)


@pytest.fixture(scope="module")
def cache_path(rt1_dataset_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "train.npz"
    return write_clip_cache(
        rt1_dataset_dir,
        "train",
        out,
        height=32,
        width=40,
        skeleton_from_ground_truth=True,
        progress=False,
    )


def test_cache_windows_equal_the_directory_windows(rt1_dataset_dir, cache_path):
    direct = list(ClipDataset(rt1_dataset_dir, "train", CFG))
    cached = list(ClipDataset(cache_path, "train", CFG))
    assert len(direct) == len(cached) > 0
    for a, b in zip(direct, cached, strict=True):
        assert (a["episode_id"], a["start"], a["instruction"]) == (
            b["episode_id"],
            b["start"],
            b["instruction"],
        )
        for key in ("context", "frames", "skeleton", "actions"):
            assert torch.equal(a[key], b[key]), key


def test_cache_shuffle_is_seeded_and_sharded(cache_path):
    cfg = dataclasses.replace(CFG, shuffle=True, shuffle_buffer=8, seed=3)

    def keys(ds):
        return [(x["episode_id"], x["start"]) for x in ds]

    a, b = ClipDataset(cache_path, "train", cfg), ClipDataset(cache_path, "train", cfg)
    assert keys(a) == keys(b)
    b.set_epoch(1)
    assert keys(a) != keys(b)
    shards = [keys(ClipDataset(cache_path, "train", cfg, rank=r, world_size=2)) for r in (0, 1)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(keys(a))


def test_mismatched_or_broken_cache_is_a_clear_error(cache_path, tmp_path):
    with pytest.raises(ValueError, match=r"height = 32 \(wanted 64\).*vap-env data cache"):
        ClipDataset(cache_path, "train", dataclasses.replace(CFG, height=64))
    with pytest.raises(ValueError, match=r"split = 'train' \(wanted 'test'\)"):
        ClipDataset(cache_path, "test", CFG)
    with pytest.raises(FileNotFoundError, match="vap-env data cache"):
        ClipCache(tmp_path / "missing.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(cache_path.read_bytes()[:1000])  # a copy cut short
    with pytest.raises(ValueError, match="not a readable clip cache"):
        ClipCache(broken)
    with pytest.raises(ValueError, match=r"\.npz file"):
        write_clip_cache(cache_path.parent, "train", tmp_path / "x.bin", height=8, width=8)


def test_cache_holds_uint8_at_the_asked_size(cache_path):
    cache = ClipCache(cache_path)
    ep = cache.episode(0)
    assert ep["frames"].dtype == np.uint8 and ep["frames"].shape[1:] == (32, 40, 3)
    assert ep["skeleton"].shape == ep["frames"].shape
    assert ep["skeleton"].max() > 0  # the arm is drawn


def test_index_only_open_defers_the_pixels_and_reads_the_same(cache_path, tmp_path):
    full, index = ClipCache(cache_path), ClipCache(cache_path, arrays=False)
    assert index._arrays is None  # a settings check decompresses no pixels
    assert (index.num_episodes, index.episode_ids, index.instructions, index.meta) == (
        full.num_episodes,
        full.episode_ids,
        full.instructions,
        full.meta,
    )
    index.check("train", 32, 40, True)
    for key in ("frames", "skeleton", "actions"):
        assert np.array_equal(index.episode(2)[key], full.episode(2)[key]), key
    # lengths that do not add up to the stored frames are caught from the headers alone
    with np.load(cache_path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["lengths"] = arrays["lengths"] + 1
    bad = tmp_path / "lengths.npz"
    np.savez_compressed(bad, **arrays)
    with pytest.raises(ValueError, match=r"episode lengths sum to .* corrupt cache"):
        ClipCache(bad, arrays=False)


def test_droid_intrinsics_reach_the_skeletons_and_the_cache_records_them(
    droid_dataset_dir, tmp_path
) -> None:
    cfg = dataclasses.replace(CFG, skeleton_from_ground_truth=False)
    k = (180.0, 170.0, 150.0, 80.0)  # a user's calibration, unlike DROID_DEFAULT_K
    path = write_clip_cache(
        droid_dataset_dir,
        "val",
        tmp_path / "val.npz",
        height=32,
        width=40,
        intrinsics=k,
        progress=False,
    )
    assert ClipCache(path).meta["intrinsics"] == list(k)
    given = list(ClipDataset(droid_dataset_dir, "val", cfg, intrinsics=k))
    default = list(ClipDataset(droid_dataset_dir, "val", cfg))
    cached = list(ClipDataset(path, "val", cfg, intrinsics=k))
    assert len(given) == len(cached) == len(default) > 0
    assert all(
        torch.equal(a["skeleton"], b["skeleton"]) for a, b in zip(given, cached, strict=True)
    )
    assert not torch.equal(given[0]["skeleton"], default[0]["skeleton"])
    assert all(torch.equal(a["frames"], b["frames"]) for a, b in zip(given, default, strict=True))
    # Training with another K than the cache was drawn with would teach misplaced skeletons.
    with pytest.raises(
        ValueError,
        match=r"intrinsics = \[180.0, 170.0, 150.0, 80.0\] \(wanted \[130.0, 130.0, 160.0, 90.0\]\)",
    ):
        ClipDataset(path, "val", cfg)
    # The K in effect is compared, not how it was written: the default given explicitly matches.
    default_path = write_clip_cache(
        droid_dataset_dir, "val", tmp_path / "default.npz", height=32, width=40, progress=False
    )
    assert ClipCache(default_path).meta["intrinsics"] == [130.0, 130.0, 160.0, 90.0]
    ClipDataset(default_path, "val", cfg, intrinsics=(130.0, 130.0, 160.0, 90.0))
    ClipDataset(default_path, "val", cfg, intrinsics=())


def test_rt1_cache_ignores_intrinsics(cache_path) -> None:
    assert ClipCache(cache_path).meta["intrinsics"] is None
    ClipDataset(cache_path, "train", CFG, intrinsics=(180.0, 170.0, 150.0, 80.0))  # no error


def test_cache_command_does_not_replace_a_cache_unasked(rt1_dataset_dir, tmp_path) -> None:
    from vap_env.commands.data_cache import Config, main

    cfg = Config(
        data_dir=str(rt1_dataset_dir),
        out=str(tmp_path / "val.npz"),
        split="val",
        height=32,
        width=40,
        progress=False,
    )
    assert main(cfg) == 0
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        main(cfg)
    assert main(dataclasses.replace(cfg, overwrite=True)) == 0
