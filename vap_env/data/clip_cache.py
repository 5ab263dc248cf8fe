"""Clip caches: one split's frames and skeletons at the model's resolution, in one ``.npz`` file.

Reading RLDS needs TensorFlow and drawing ground-truth skeletons needs pybullet; a clip cache needs
neither. Write it where the dataset is, copy it to the training machine (a GPU box without the
``data`` extra, say) and pass it as ``data.data_dir``::

    vap-env data cache --data-dir data/synth-rt1 --split train --height 64 --width 80 \\
        --skeleton-from-ground-truth --out data/rt1-train-64x80.npz
    vap-env train --config tiny-rt1 --data-dir data/rt1-train-64x80.npz

``ClipDataset`` cuts the same windows from a cache as from the directory (bit-identical pixels;
without shuffling, in the same order; with it, episodes are visited in a seeded per-epoch
permutation). Ground-truth masks are not cached: training does not read them.

Arrays (episodes concatenated along time; ``lengths`` splits them):

| key | shape | dtype |
|---|---|---|
| frames | (sum T, H, W, 3) | uint8 |
| skeleton | (sum T, H, W, 3) | uint8 |
| actions | (sum T, D) | float32 |
| lengths | (N,) | int64 |
| instruction, episode_id | (N,) | str |
| meta | () | str (JSON: format, split, height, width, skeleton_from_ground_truth, source, dataset, intrinsics) |
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vap_env.data.intrinsics import intrinsics_key

CACHE_FORMAT = 1
CACHE_SUFFIX = ".npz"
_PER_FRAME = ("frames", "skeleton", "actions")  # most of the file
_INDEX = ("lengths", "instruction", "episode_id", "meta")
_ARRAYS = _PER_FRAME + _INDEX


def _stored_shape(npz: Any, key: str) -> tuple[int, ...]:
    """The shape of array ``key`` of an open ``.npz``, read from its header alone."""
    with npz.zip.open(f"{key}.npy") as f:
        major, _ = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, _, _ = read(f)
    return shape


class ClipCacheMismatch(ValueError):
    """A clip cache was written for other settings than the run reading it (``ClipCache.check``)."""


def is_clip_cache(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a clip cache (by its suffix) rather than an RLDS directory."""
    return os.fspath(path).endswith(CACHE_SUFFIX)


def _fix(path: str, split: str = "train") -> str:
    return (
        f"write it with `vap-env data cache --data-dir <rlds dir> --split {split} --out {path} "
        "--overwrite` (height, width, skeleton and intrinsics options must match the model and the "
        "training config)"
    )


def write_clip_cache(
    source: str | os.PathLike[str],
    split: str,
    out: str | os.PathLike[str],
    *,
    height: int,
    width: int,
    skeleton_from_ground_truth: bool = False,
    strict: bool = False,
    intrinsics: Any = None,
    progress: bool = True,
) -> Path:
    """Resize every episode of ``split`` to ``height`` x ``width``, draw its skeleton, write ``out``.

    ``intrinsics``: DROID's camera K, ``(fx, fy, cx, cy)`` or (3, 3) at 320x180 (see
    ``vap_env.data.rlds.open_rlds``); the skeletons are drawn with it, and the cache records it.
    The file appears only when complete (written to a temporary name, then renamed).
    """
    from tqdm.auto import tqdm

    from vap_env.data.clips import _resize
    from vap_env.data.rlds import open_rlds
    from vap_env.data.schemas import RT1
    from vap_env.data.skeletons import render_skeleton

    out = Path(out)
    if not is_clip_cache(out):
        raise ValueError(f"out = {os.fspath(out)!r}: a clip cache is a {CACHE_SUFFIX} file")
    reader = open_rlds(source, strict=strict, intrinsics=intrinsics)
    droid = reader.schema.name != RT1.name  # RT-1 ignores intrinsics
    frames: list[np.ndarray] = []
    skeletons: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    instructions: list[str] = []
    episode_ids: list[str] = []
    total = reader.num_episodes(split)
    for episode in tqdm(reader.episodes(split), total=total, disable=not progress, unit="episode"):
        frames.append(_resize(episode.frames, width, height, cv2.INTER_AREA))  # (T, H, W, 3)
        skeletons.append(
            render_skeleton(episode, width, height, from_ground_truth=skeleton_from_ground_truth)
        )  # (T, H, W, 3)
        actions.append(episode.actions.astype(np.float32))  # (T, D)
        instructions.append(episode.instruction)
        episode_ids.append(episode.episode_id)
    if not frames:
        raise ValueError(f"split {split!r} of {os.fspath(source)!r} has no episodes to cache")
    meta = {
        "format": CACHE_FORMAT,
        "split": split,
        "height": height,
        "width": width,
        "skeleton_from_ground_truth": skeleton_from_ground_truth,
        "source": os.fspath(source),
        "dataset": reader.schema.name,
        "intrinsics": intrinsics_key(intrinsics) if droid else None,  # [fx, fy, cx, cy] in effect
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:  # a file object: numpy would append ".npz" to a path
            np.savez_compressed(
                f,
                frames=np.concatenate(frames),
                skeleton=np.concatenate(skeletons),
                actions=np.concatenate(actions),
                lengths=np.array([len(x) for x in frames], dtype=np.int64),
                instruction=np.array(instructions, dtype=str),
                episode_id=np.array(episode_ids, dtype=str),
                meta=np.array(json.dumps(meta)),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


class ClipCache:
    """A clip cache loaded into memory (see the module docstring).

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file and how to rewrite it when it is
    missing, not a cache, or of another format.
    """

    def __init__(self, path: str | os.PathLike[str], *, arrays: bool = True) -> None:
        """Open the cache; ``arrays=False`` reads only its index (meta, episode lengths, ids,
        instructions) and defers ``frames`` / ``skeleton`` / ``actions`` to their first use.

        The index is all a settings check needs, and the pixel arrays are most of the file
        (gigabytes at full size). Datasets load them here (the default), before DataLoader
        workers fork, so the workers share one copy.
        """
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"clip cache {self.path!r} does not exist; {_fix(self.path)}")
        try:
            with np.load(self.path, allow_pickle=False) as z:
                missing = [k for k in _ARRAYS if k not in z.files]
                if missing:
                    raise KeyError(f"missing arrays {missing}")
                index = {k: z[k] for k in _INDEX}
                counts = {k: _stored_shape(z, k)[0] for k in _PER_FRAME}
            meta = json.loads(str(index.pop("meta")))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
            raise ValueError(
                f"{self.path!r} is not a readable clip cache ({err}); {_fix(self.path)}"
            ) from err
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(
                f"{self.path!r} is clip-cache format {meta.get('format')!r}, this vap-env reads "
                f"format {CACHE_FORMAT}; {_fix(self.path)}"
            )
        self.meta: dict[str, Any] = meta
        self.instructions: list[str] = [str(x) for x in index["instruction"]]
        self.episode_ids: list[str] = [str(x) for x in index["episode_id"]]
        self.offsets = np.concatenate([[0], np.cumsum(index["lengths"])])  # (N + 1,)
        if self.offsets[-1] != counts["frames"] or counts["skeleton"] != counts["frames"]:
            raise ValueError(
                f"{self.path!r}: episode lengths sum to {self.offsets[-1]} but it holds "
                f"{counts['frames']} frames and {counts['skeleton']} skeleton frames (a corrupt "
                f"cache); {_fix(self.path)}"
            )
        self._arrays: dict[str, np.ndarray] | None = None
        if arrays:
            self.load()

    def load(self) -> dict[str, np.ndarray]:
        """Read ``frames`` / ``skeleton`` / ``actions`` now if not yet read; returns them by name."""
        if self._arrays is None:
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    self._arrays = {k: z[k] for k in _PER_FRAME}
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
                raise ValueError(
                    f"{self.path!r} is not a readable clip cache ({err}); {_fix(self.path)}"
                ) from err
        return self._arrays

    @property
    def frames(self) -> np.ndarray:
        """(sum T, H, W, 3) uint8 camera frames of all episodes."""
        return self.load()["frames"]

    @property
    def skeleton(self) -> np.ndarray:
        """(sum T, H, W, 3) uint8 skeleton frames of all episodes."""
        return self.load()["skeleton"]

    @property
    def actions(self) -> np.ndarray:
        """(sum T, D) float32 actions of all episodes."""
        return self.load()["actions"]

    @property
    def split(self) -> str:
        """The split the cache was written from."""
        return str(self.meta["split"])

    @property
    def num_episodes(self) -> int:
        """Episodes in the cache."""
        return len(self.offsets) - 1

    def check(
        self,
        split: str,
        height: int,
        width: int,
        skeleton_from_ground_truth: bool,
        intrinsics: Any = None,
        *,
        advice: str | None = None,
    ) -> None:
        """Raise ``ClipCacheMismatch`` unless the cache holds ``split`` at this size and skeleton
        kind, and (DROID) its skeletons were drawn with the same K (None or empty: the default K).

        ``advice`` replaces the generic how-to-rewrite hint (a caller that knows the exact fix).
        """
        wanted = {
            "split": split,
            "height": height,
            "width": width,
            "skeleton_from_ground_truth": skeleton_from_ground_truth,
        }
        if self.meta.get("intrinsics") is not None:  # a DROID cache; RT-1 ignores intrinsics
            wanted["intrinsics"] = intrinsics_key(intrinsics)
        wrong = {k: (self.meta.get(k), v) for k, v in wanted.items() if self.meta.get(k) != v}
        if wrong:
            what = ", ".join(
                f"{k} = {have!r} (wanted {want!r})" for k, (have, want) in wrong.items()
            )
            raise ClipCacheMismatch(
                f"clip cache {self.path!r} does not match: {what}; "
                f"{advice or _fix(self.path, split)}"
            )

    def episode(self, i: int) -> dict[str, Any]:
        """Episode ``i``: frames / skeleton (T, H, W, 3) uint8, actions (T, D), instruction, id."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return {
            "frames": self.frames[a:b],
            "skeleton": self.skeleton[a:b],
            "actions": self.actions[a:b],
            "instruction": self.instructions[i],
            "episode_id": self.episode_ids[i],
        }
