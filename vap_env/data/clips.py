"""Training clips: context frame + K target frames + K+1 skeleton frames + instruction.

``ClipDataset`` is a torch ``IterableDataset`` over an RLDS directory (or a list of ``Episode``).
Each episode is cut into windows starting at ``s = 0, stride, 2*stride, ...`` with ``s + K < T``:

| key | shape | dtype | meaning |
|---|---|---|---|
| context | (3, H, W) | see ``output`` | frame s (the image the model conditions on) |
| frames | (K, 3, H, W) | see ``output`` | frames s+1 .. s+K (the targets) |
| skeleton | (K+1, 3, H, W) | see ``output`` | skeletons of the states s .. s+K (context state + K) |
| actions | (K, D) | float32 | the episode's actions s .. s+K-1 (each leads to the next frame) |
| instruction | str | | |
| episode_id | str | | |
| start | int | | s |
| gripper_mask, object_mask | (K+1, H, W) | bool | frames s .. s+K, only with ground truth and ``masks=True`` |

``output="float"`` gives float32 in [-1, 1] (x / 127.5 - 1, the VAE's input range); ``"uint8"``
keeps 0..255. Frames are resized with area interpolation, masks with nearest; skeletons are drawn
directly at H x W with the camera scaled to that size (thin lines stay crisp).

Works with DataLoader workers: episode ``i`` of the split belongs to worker
``i % (num_workers * world_size) == rank * num_workers + worker_id``, so every episode is read by
exactly one worker of one process, and records of other workers are skipped before decoding.
Shuffling is seeded: shards are visited in a per-epoch permutation and windows go through a
shuffle buffer; ``set_epoch`` changes the order, the same (seed, epoch) repeats it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from vap_env.data.clip_cache import ClipCache, is_clip_cache
from vap_env.data.episode import Episode
from vap_env.data.skeletons import render_skeleton


@dataclass(frozen=True)
class ClipConfig:
    """How episodes become training windows."""

    chunk_frames: int = field(
        default=8, metadata={"help": "K, target frames per clip (multiple of 4)"}
    )
    height: int = field(default=64, metadata={"help": "output height (model resolution)"})
    width: int = field(default=80, metadata={"help": "output width (model resolution)"})
    stride: int = field(default=0, metadata={"help": "window start step; 0 = chunk_frames"})
    shuffle: bool = field(default=True, metadata={"help": "seeded shuffle of shards and windows"})
    shuffle_buffer: int = field(default=64, metadata={"help": "windows held for shuffling"})
    seed: int = field(default=0, metadata={"help": "shuffle seed"})
    output: str = field(default="float", metadata={"help": "'float' ([-1, 1] float32) or 'uint8'"})
    masks: bool = field(default=True, metadata={"help": "add ground-truth masks when present"})
    skeleton_from_ground_truth: bool = field(
        default=False,
        metadata={"help": "RT-1: draw the full arm from synthetic ground-truth joints"},
    )

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames = {self.chunk_frames}; need at least 1")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"clip size {self.width}x{self.height} is too small (>= 8x8)")
        if self.output not in ("float", "uint8"):
            raise ValueError(f"output = {self.output!r}; use 'float' ([-1, 1]) or 'uint8'")
        if self.stride < 0 or self.shuffle_buffer < 1:
            raise ValueError(
                f"stride = {self.stride} (>= 0) / shuffle_buffer = {self.shuffle_buffer} (>= 1)"
            )


def _resize(frames: np.ndarray, width: int, height: int, interp: int) -> np.ndarray:
    """(T, h, w, ...) -> (T, height, width, ...)."""
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


def episode_windows(episode: Episode, cfg: ClipConfig) -> list[dict[str, Any]]:
    """All windows of one episode as numpy/str items (before tensor conversion)."""
    k = cfg.chunk_frames
    stride = cfg.stride or k
    t_len = episode.num_steps
    starts = list(range(0, t_len - k, stride))
    if not starts:
        return []
    frames = _resize(episode.frames, cfg.width, cfg.height, cv2.INTER_AREA)  # (T, H, W, 3)
    skeleton = render_skeleton(
        episode, cfg.width, cfg.height, from_ground_truth=cfg.skeleton_from_ground_truth
    )  # (T, H, W, 3)
    gt = episode.ground_truth if cfg.masks else None
    gmask = omask = None
    if gt is not None:
        gmask = (
            _resize(gt.gripper_masks.astype(np.uint8), cfg.width, cfg.height, cv2.INTER_NEAREST) > 0
        )
        omask = (
            _resize(gt.object_masks.astype(np.uint8), cfg.width, cfg.height, cv2.INTER_NEAREST) > 0
        )
    return _windows(
        frames,
        skeleton,
        episode.actions,
        episode.instruction,
        episode.episode_id,
        cfg,
        gmask,
        omask,
    )


def _windows(
    frames: np.ndarray,  # (T, H, W, 3)
    skeleton: np.ndarray,  # (T, H, W, 3)
    actions: np.ndarray,  # (T, D)
    instruction: str,
    episode_id: str,
    cfg: ClipConfig,
    gmask: np.ndarray | None = None,  # (T, H, W) bool
    omask: np.ndarray | None = None,  # (T, H, W) bool
) -> list[dict[str, Any]]:
    k = cfg.chunk_frames
    out = []
    for s in range(0, len(frames) - k, cfg.stride or k):
        item: dict[str, Any] = {
            "context": frames[s],
            "frames": frames[s + 1 : s + k + 1],
            "skeleton": skeleton[s : s + k + 1],
            "actions": actions[s : s + k].astype(np.float32),
            "instruction": instruction,
            "episode_id": episode_id,
            "start": s,
        }
        if gmask is not None and omask is not None:
            item["gripper_mask"] = gmask[s : s + k + 1]
            item["object_mask"] = omask[s : s + k + 1]
        out.append(item)
    return out


def _to_tensors(item: dict[str, Any], output: str) -> dict[str, Any]:
    def image(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x))
        t = t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)  # channels first
        return t.contiguous() if output == "uint8" else t.float().div(127.5).sub(1.0)

    out = dict(item)
    for key in ("context", "frames", "skeleton"):
        out[key] = image(item[key])
    out["actions"] = torch.from_numpy(item["actions"])
    for key in ("gripper_mask", "object_mask"):
        if key in item:
            out[key] = torch.from_numpy(np.ascontiguousarray(item[key]))
    return out


class ClipDataset(IterableDataset):
    """Windows of an RLDS split (or of given episodes) as tensors (see the module docstring).

    Args:
        source: an RT-1/DROID directory (``open_rlds``), a clip cache (``.npz``, see
            ``vap_env.data.clip_cache``; no TensorFlow or pybullet needed) or a sequence of
            ``Episode``.
        split: split to read from a directory.
        config: window size, resolution, shuffling.
        rank, world_size: shard across processes too (e.g. Accelerate); default one process.
        strict: passed to the reader (raise on corrupt records instead of skipping them).
        intrinsics: DROID's camera K, ``(fx, fy, cx, cy)`` or (3, 3) at 320x180, for the skeletons
            (default ``DROID_DEFAULT_K``; see ``vap_env.data.rlds.open_rlds``). A cache must have
            been written with the same K.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | Sequence[Episode],
        split: str = "train",
        config: ClipConfig | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        strict: bool = False,
        intrinsics: Any = None,
    ) -> None:
        super().__init__()
        self.config = config or ClipConfig()
        if not (0 <= rank < world_size):
            raise ValueError(f"rank = {rank} must be in [0, world_size = {world_size})")
        self.rank, self.world_size, self.split, self.strict = rank, world_size, split, strict
        self.intrinsics = intrinsics
        self.epoch = 0
        self.cache: ClipCache | None = None
        if isinstance(source, str | os.PathLike) and is_clip_cache(source):
            self.data_dir = os.fspath(source)
            self.episodes = None
            self.cache = ClipCache(self.data_dir, arrays=False)
            cfg = self.config
            self.cache.check(
                split, cfg.height, cfg.width, cfg.skeleton_from_ground_truth, intrinsics
            )
            self.cache.load()  # now, in the parent: forked DataLoader workers share one copy
            self.num_episodes = self.cache.num_episodes
        elif isinstance(source, str | os.PathLike):
            from vap_env.data.rlds import open_rlds

            self.data_dir: str | None = os.fspath(source)
            self.episodes: list[Episode] | None = None
            # validates the directory, the intrinsics and the split up front
            reader = open_rlds(self.data_dir, intrinsics=intrinsics)
            self.num_episodes = reader.num_episodes(split)
        else:
            self.data_dir = None
            self.episodes = list(source)
            self.num_episodes = len(self.episodes)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (call before iterating, in every process)."""
        self.epoch = int(epoch)

    def _mine(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return workers * self.world_size, self.rank * workers + worker

    def _episodes(self, rng: np.random.Generator) -> Iterator[Episode]:
        shards, me = self._mine()
        if self.episodes is not None:
            order = (
                rng.permutation(self.num_episodes)
                if self.config.shuffle
                else range(self.num_episodes)
            )
            for i in order:
                if i % shards == me:
                    yield self.episodes[i]
            return
        from vap_env.data.rlds import open_rlds

        # one reader per worker process
        reader = open_rlds(self.data_dir, strict=self.strict, intrinsics=self.intrinsics)
        yield from reader.episodes(
            self.split,
            select=lambda i: i % shards == me,
            shard_order=rng.permutation(len(reader.shard_files(self.split)))
            if self.config.shuffle
            else None,
        )

    def _episode_windows(self, rng: np.random.Generator) -> Iterator[list[dict[str, Any]]]:
        if self.cache is None:
            for episode in self._episodes(rng):
                yield episode_windows(episode, self.config)
            return
        shards, me = self._mine()
        n = self.num_episodes
        # The same visiting order as a directory of one shard: a per-epoch episode permutation.
        order = rng.permutation(n) if self.config.shuffle else range(n)
        for i in order:
            if i % shards == me:
                ep = self.cache.episode(int(i))
                yield _windows(
                    ep["frames"],
                    ep["skeleton"],
                    ep["actions"],
                    ep["instruction"],
                    ep["episode_id"],
                    self.config,
                )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        cfg = self.config
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, self.epoch]))
        buffer: list[dict[str, Any]] = []
        for windows in self._episode_windows(rng):
            for item in windows:
                if not cfg.shuffle:
                    yield _to_tensors(item, cfg.output)
                    continue
                buffer.append(item)
                if len(buffer) >= cfg.shuffle_buffer:
                    yield _to_tensors(buffer.pop(int(rng.integers(len(buffer)))), cfg.output)
        while buffer:
            yield _to_tensors(buffer.pop(int(rng.integers(len(buffer)))), cfg.output)
