"""Read RT-1 (``fractal20220817_data``) and DROID RLDS directories into ``Episode`` objects.

A directory is opened with ``tfds.builder_from_directory`` only (never by dataset name, which would
reach for cloud storage). ``data_dir`` may be the version directory (``.../fractal20220817_data/0.1.0``),
the dataset directory above it (the highest version is used) or a root holding one dataset directory.

Records are read shard by shard (``tf.data.TFRecordDataset``) and decoded with the builder's own
FeaturesDict, so every problem has an address: a corrupt record, a missing feature or a record that
cannot be standardised is *skipped, counted* (``RLDSDataset.skipped``) and reported with a
``CorruptRecordWarning`` naming the shard file, the record index and the feature; with
``strict=True`` it raises ``CorruptRecordError`` instead. A corrupt record ends its shard (the
TFRecord framing cannot be re-synchronised), so the rest of that shard is counted as skipped too.

Standardisation (one function per dataset, ``STANDARDISERS``; the ``Episode`` table is in
``vap_env.data.episode``):

- RT-1: frames = ``observation/image``; TCP = ``base_pose_tool_reached``; gripper =
  ``gripper_closed``; actions are recomputed from the logged states in the ``ee_delta`` convention
  (so replaying them reproduces the logged TCP path; RT-1's raw commands are not replayable); camera =
  the Google robot's RT-1 head camera (RT-1 logs none); no joints; success from the synthetic ground
  truth when present, else None.
- DROID: frames = ``exterior_image_1_left``; joints = ``joint_position``; gripper =
  ``gripper_position``; TCP from ``cartesian_position`` (xyz + extrinsic-xyz Euler of the flange,
  ``panda_link8``, moved to the Robotiq TCP by the fixed ``schema.cartesian_to_tcp()``); actions =
  ``action_dict/joint_position`` + ``action_dict/gripper_position``; camera = extrinsics
  ``extrinsics_exterior_cam_1`` (1.0.1) with intrinsics that RLDS does not store:
  ``DROID_DEFAULT_K`` unless ``intrinsics=`` is given (1.0.0 has no extrinsics: the Franka's default
  camera is used); success = ``"/success/" in file_path``.

Synthetic directories carry ``ground_truth/<split>/<episode_id>.npz``, attached as
``Episode.ground_truth``.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vap_env._optional import require
from vap_env.data.episode import Episode, GroundTruth
from vap_env.data.intrinsics import DROID_DEFAULT_K, as_intrinsics
from vap_env.data.rotations import ee_delta_actions
from vap_env.data.schemas import SCHEMAS_BY_NAME, DatasetSchema, flat_feature_specs
from vap_env.data.skills import skill_from_instruction


class CorruptRecordError(ValueError):
    """A record could not be read or standardised (raised in strict mode)."""


class CorruptRecordWarning(UserWarning):
    """A record was skipped (default mode); the message names the file, record and feature."""


@dataclass(frozen=True)
class SkippedRecord:
    """Where and why a record was skipped."""

    file: str
    record: int  # index of the record inside its shard file
    feature: str  # the feature at fault ("<record>" when the record itself is unreadable)
    reason: str

    def message(self) -> str:
        """One line naming the shard file, the record index, the feature and the reason."""
        return f"{self.file}, record {self.record}, feature {self.feature!r}: {self.reason}"


@dataclass(frozen=True)
class RawRecord:
    """One serialised episode and its address."""

    split: str
    index: int  # position in the split (shard order, then record order): the episode id's number
    file: str
    record: int  # position inside the shard file
    data: bytes

    @property
    def episode_id(self) -> str:
        """``<split>_<index:06d>``, the id the synthetic ground truth is filed under."""
        return f"{self.split}_{self.index:06d}"


@functools.cache
def _robot(name: str) -> Any:
    from kinematics import load_robot

    return load_robot(name)


def resolve_data_dir(data_dir: str | os.PathLike[str]) -> Path:
    """The version directory (the one holding ``dataset_info.json``) for ``data_dir``."""
    if not isinstance(data_dir, str | os.PathLike):
        raise TypeError(f"data_dir must be a path (str or os.PathLike), got {data_dir!r}")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"dataset directory {str(path)!r} does not exist")
    if (path / "dataset_info.json").is_file():
        return path
    versions = [p for p in path.iterdir() if (p / "dataset_info.json").is_file()]
    if versions:
        return max(
            versions, key=lambda p: tuple(int(x) if x.isdigit() else -1 for x in p.name.split("."))
        )
    datasets = [p for p in path.iterdir() if p.name in SCHEMAS_BY_NAME and p.is_dir()]
    if len(datasets) == 1:
        return resolve_data_dir(datasets[0])
    if len(datasets) > 1:
        raise ValueError(
            f"{str(path)!r} holds several datasets {sorted(p.name for p in datasets)}; pass one of them"
        )
    raise FileNotFoundError(
        f"{str(path)!r} is not an RLDS dataset directory: expected dataset_info.json in it, in a version "
        f"subdirectory (e.g. 0.1.0/), or a dataset subdirectory named one of {sorted(SCHEMAS_BY_NAME)}"
    )


class RLDSDataset:
    """An opened RT-1 or DROID directory (see the module docstring).

    Args:
        data_dir: version dir, dataset dir or root (``resolve_data_dir``).
        strict: raise on a corrupt record / missing feature instead of skipping it.
        intrinsics: K for DROID's exterior camera at 320x180, (3, 3) or ``(fx, fy, cx, cy)``
            (default ``DROID_DEFAULT_K``; ignored for RT-1).
        load_ground_truth: attach ``ground_truth/<split>/<id>.npz`` when present.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        strict: bool = False,
        intrinsics: np.ndarray | Sequence[float] | None = None,
        load_ground_truth: bool = True,
    ) -> None:
        self.tf = require("tensorflow")
        import tensorflow_datasets as tfds

        self.path = resolve_data_dir(data_dir)
        try:
            self.builder = tfds.builder_from_directory(os.fspath(self.path))
        except Exception as err:  # protobuf / JSON parse errors that name no file
            raise ValueError(
                f"cannot open {self.path} as a TFDS dataset: its dataset_info.json / features.json "
                f"are missing or damaged ({type(err).__name__}: {str(err).splitlines()[0]}); "
                "re-copy the directory"
            ) from None
        name = self.builder.info.name
        if name not in SCHEMAS_BY_NAME:
            raise ValueError(
                f"{self.path} holds dataset {name!r}; vap-env reads {sorted(SCHEMAS_BY_NAME)}"
            )
        self.schema: DatasetSchema = SCHEMAS_BY_NAME[name]
        self.features = self.builder.info.features
        self.feature_keys = sorted(flat_feature_specs(self.features))
        self.strict = strict
        k = as_intrinsics(intrinsics)
        self.intrinsics = DROID_DEFAULT_K if k is None else k
        self.load_ground_truth = load_ground_truth
        self.skipped: list[SkippedRecord] = []

    # ------------------------------------------------------------------ splits
    @property
    def splits(self) -> list[str]:
        """The split names of ``dataset_info.json``, in its order."""
        return list(self.builder.info.splits.keys())

    def _split_info(self, split: str) -> Any:
        if not isinstance(split, str):
            raise TypeError(f"split must be a split name such as 'train', got {split!r}")
        if split not in self.builder.info.splits:
            from vap_env.config import did_you_mean

            raise KeyError(
                f"{self.path} has no split {split!r}; splits: {self.splits}.{did_you_mean(split, self.splits)}"
            )
        return self.builder.info.splits[split]

    def num_episodes(self, split: str = "train") -> int:
        """Episodes in ``split`` according to ``dataset_info.json`` (skipped ones included)."""
        return int(self._split_info(split).num_examples)

    def shard_files(self, split: str) -> list[tuple[Path, int]]:
        """(shard path, expected record count) in read order."""
        info = self._split_info(split)
        return [(self.path / f, n) for f, n in zip(info.filenames, info.shard_lengths, strict=True)]

    # ------------------------------------------------------------------ problems
    @property
    def num_skipped(self) -> int:
        """How many records were skipped so far (``skipped`` says which and why)."""
        return len(self.skipped)

    def _problem(self, file: Path | str, record: int, feature: str, reason: str) -> None:
        item = SkippedRecord(str(file), record, feature, reason)
        if self.strict:
            raise CorruptRecordError(
                item.message() + " (strict mode; use strict=False to skip such records)"
            )
        self.skipped.append(item)
        warnings.warn(f"skipping {item.message()}", CorruptRecordWarning, stacklevel=3)

    # ------------------------------------------------------------------ reading
    def records(
        self,
        split: str = "train",
        select: Callable[[int], bool] | None = None,
        shard_order: Sequence[int] | None = None,
    ) -> Iterator[RawRecord]:
        """Serialised episodes of ``split``.

        ``select(index)`` filters before any bytes are decoded (a shard none of whose episodes is
        selected is not even opened); ``shard_order`` visits the shards in that order (episode
        indices stay those of the directory order).
        """
        tf = self.tf
        shards = self.shard_files(split)
        offsets = np.concatenate([[0], np.cumsum([n for _, n in shards])]).astype(int).tolist()
        for s in range(len(shards)) if shard_order is None else shard_order:
            path, expected = shards[s]
            index = offsets[s]
            if select is not None and not any(select(i) for i in range(index, index + expected)):
                continue
            if not path.is_file():
                for r in range(expected):
                    self._problem(path, r, "<record>", "shard file is missing")
                continue
            read = 0
            try:
                for data in tf.data.TFRecordDataset(os.fspath(path)).as_numpy_iterator():
                    if read >= expected:
                        self._problem(
                            path, read, "<record>", f"shard holds more than its {expected} records"
                        )
                        break
                    if select is None or select(index + read):
                        yield RawRecord(split, index + read, str(path), read, bytes(data))
                    read += 1
            except tf.errors.DataLossError as err:
                found = re.search(r"(corrupted|truncated) record at \d+", str(err))
                msg = found.group(0) if found else str(err).split("\n")[0]
                for r in range(read, max(expected, read + 1)):
                    self._problem(
                        path, r, "<record>", f"unreadable ({msg}); the rest of the shard is lost"
                    )
                continue
            for r in range(read, expected):
                self._problem(path, r, "<record>", f"shard ends after {read} of {expected} records")

    def decode(self, raw: RawRecord) -> Episode | None:
        """Standardise one record into an ``Episode`` (None if it was skipped)."""
        try:
            example = self.tf.train.Example.FromString(raw.data)
        except Exception as err:
            self._problem(raw.file, raw.record, "<record>", f"not a tf.train.Example ({err})")
            return None
        present = set(example.features.feature.keys())
        missing = [k for k in self.feature_keys if k not in present]
        if missing:
            self._problem(raw.file, raw.record, missing[0], f"missing feature(s) {missing}")
            return None
        try:
            decoded = self.features.deserialize_example_np(raw.data)
            steps = decoded["steps"]
            steps = [steps[i] for i in range(len(steps))]
        except Exception as err:
            self._problem(
                raw.file,
                raw.record,
                _feature_in(str(err), self.feature_keys),
                f"cannot decode ({err})",
            )
            return None
        if not steps:
            self._problem(raw.file, raw.record, "steps", "episode has no steps")
            return None
        try:
            episode = STANDARDISERS[self.schema.name](self, decoded, steps, raw)
        except (ValueError, KeyError) as err:
            self._problem(raw.file, raw.record, _feature_in(str(err), self.feature_keys), str(err))
            return None
        return episode

    def episodes(
        self,
        split: str = "train",
        select: Callable[[int], bool] | None = None,
        shard_order: Sequence[int] | None = None,
    ) -> Iterator[Episode]:
        """Standardised episodes of ``split`` (skipping / raising on bad records, see the class doc)."""
        for raw in self.records(split, select, shard_order):
            episode = self.decode(raw)
            if episode is not None:
                yield episode

    def load_episode(self, episode_id: str) -> Episode:
        """The episode ``<split>_<index>`` (KeyError if there is no such episode or it is corrupt)."""
        split, _, num = episode_id.rpartition("_")
        if not split or not num.isdigit():
            raise KeyError(
                f"episode id {episode_id!r} is not of the form <split>_<index>, e.g. 'train_000003'"
            )
        index = int(num)
        total = self.num_episodes(split)
        if index >= total:
            raise KeyError(f"{episode_id!r}: split {split!r} of {self.path} has {total} episodes")
        for episode in self.episodes(split, select=lambda i: i == index):
            return episode
        raise KeyError(
            f"{episode_id!r} could not be read: {self.skipped[-1].message() if self.skipped else '?'}"
        )

    def ground_truth_path(self, episode_id: str) -> Path:
        """Where a synthetic episode's ground truth ``.npz`` would be (real data has none)."""
        split = episode_id.rpartition("_")[0]
        return self.path / "ground_truth" / split / f"{episode_id}.npz"

    def _ground_truth(self, episode_id: str) -> GroundTruth | None:
        if not self.load_ground_truth:
            return None
        path = self.ground_truth_path(episode_id)
        if not path.is_file():
            return None
        try:
            return GroundTruth.load(path)
        except Exception as err:  # np.load's zipfile / pickle / key errors
            # Named here: the caller would report it against the episode's tfrecord.
            raise ValueError(
                f"ground-truth file {path} is unreadable ({err}); regenerate the dataset, or open "
                "it with load_ground_truth=False"
            ) from None


def _feature_in(text: str, keys: list[str]) -> str:
    """The most specific feature key mentioned in an error text ("<record>" if none)."""
    hits = [k for k in keys if k in text or k.rsplit("/", 1)[-1] in text]
    return max(hits, key=len) if hits else "<record>"


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _stack(steps: list[dict[str, Any]], *path: str, dtype: Any = np.float32) -> np.ndarray:
    out = []
    for step in steps:
        v = step
        for p in path:
            v = v[p]
        out.append(v)
    arr = np.asarray(out, dtype=dtype)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"feature steps/{'/'.join(path)} holds NaN/inf values")
    return arr


def standardise_rt1(
    ds: RLDSDataset, decoded: dict[str, Any], steps: list[dict[str, Any]], raw: RawRecord
) -> Episode:
    """RT-1 record -> Episode (see the module docstring)."""
    tcp = _stack(steps, "observation", "base_pose_tool_reached")
    norms = np.linalg.norm(tcp[:, 3:], axis=1)
    if np.any(norms < 1e-6):
        raise ValueError("feature steps/observation/base_pose_tool_reached has a zero quaternion")
    tcp[:, 3:] /= norms[:, None]
    gripper = np.clip(_stack(steps, "observation", "gripper_closed")[:, 0], 0.0, 1.0)
    actions = np.zeros((len(steps), 7), np.float32)
    actions[:, :6] = ee_delta_actions(tcp)
    actions[:-1, 6] = np.diff(gripper)
    instruction = _text(steps[0]["observation"]["natural_language_instruction"])
    robot = _robot(ds.schema.robot)
    gt = ds._ground_truth(raw.episode_id)
    return Episode(
        episode_id=raw.episode_id,
        dataset=ds.schema.name,
        robot=ds.schema.robot,
        frames=_stack(steps, "observation", "image", dtype=np.uint8),
        instruction=instruction,
        fps=ds.schema.fps,
        actions=actions,
        action_mode=ds.schema.action_mode,
        tcp_pose=tcp,
        joint_positions=None,
        gripper=gripper.astype(np.float32),
        camera=robot.default_camera(ds.schema.width, ds.schema.height),
        skill=skill_from_instruction(instruction),
        success=gt.success if gt is not None else None,
        ground_truth=gt,
        source=f"{raw.file}:{raw.record}",
    )


def standardise_droid(
    ds: RLDSDataset, decoded: dict[str, Any], steps: list[dict[str, Any]], raw: RawRecord
) -> Episode:
    """DROID record -> Episode (see the module docstring)."""
    from kinematics import PinholeCamera
    from kinematics.transforms import matrix_to_pose, xyz_rpy_to_matrix

    cart = _stack(steps, "observation", "cartesian_position", dtype=np.float64)
    logged = xyz_rpy_to_matrix(cart[:, :3], cart[:, 3:])  # (T, 4, 4)
    tcp = matrix_to_pose(logged @ ds.schema.cartesian_to_tcp()).astype(np.float32)
    joints = _stack(steps, "observation", "joint_position")
    gripper = np.clip(_stack(steps, "observation", "gripper_position")[:, 0], 0.0, 1.0)
    actions = np.concatenate(
        [
            _stack(steps, "action_dict", "joint_position"),
            _stack(steps, "action_dict", "gripper_position"),
        ],
        1,
    )
    instruction = ""
    for key in ("language_instruction", "language_instruction_2", "language_instruction_3"):
        instruction = _text(steps[0][key])
        if instruction:
            break
    meta = decoded.get("episode_metadata", {})
    h, w = ds.schema.height, ds.schema.width
    extrinsics = meta.get("extrinsics_exterior_cam_1")
    if extrinsics is not None:
        extrinsics = np.asarray(extrinsics, dtype=np.float64)
        if extrinsics.shape != (6,) or not np.all(np.isfinite(extrinsics)):
            raise ValueError(
                f"feature episode_metadata/extrinsics_exterior_cam_1 = {extrinsics!r} is not 6 finite numbers"
            )
        camera = PinholeCamera.from_xyz_rpy(extrinsics, ds.intrinsics, w, h)
    else:
        camera = _robot(ds.schema.robot).default_camera(w, h)
    gt = ds._ground_truth(raw.episode_id)
    return Episode(
        episode_id=raw.episode_id,
        dataset=ds.schema.name,
        robot=ds.schema.robot,
        frames=_stack(steps, "observation", ds.schema.image_key, dtype=np.uint8),
        instruction=instruction,
        fps=ds.schema.fps,
        actions=actions.astype(np.float32),
        action_mode=ds.schema.action_mode,
        tcp_pose=tcp,
        joint_positions=joints.astype(np.float32),
        gripper=gripper.astype(np.float32),
        camera=camera,
        skill=skill_from_instruction(instruction),
        success="/success/" in _text(meta.get("file_path", b"")),
        ground_truth=gt,
        source=f"{raw.file}:{raw.record}",
    )


STANDARDISERS: dict[
    str, Callable[[RLDSDataset, dict[str, Any], list[dict[str, Any]], RawRecord], Episode]
] = {
    "fractal20220817_data": standardise_rt1,
    "droid": standardise_droid,
    "droid_100": standardise_droid,
}


def open_rlds(
    data_dir: str | os.PathLike[str],
    *,
    strict: bool = False,
    intrinsics: np.ndarray | Sequence[float] | None = None,
) -> RLDSDataset:
    """Open an RT-1 / DROID directory (``RLDSDataset``)."""
    return RLDSDataset(data_dir, strict=strict, intrinsics=intrinsics)


def iter_episodes(
    data_dir: str | os.PathLike[str],
    split: str = "train",
    strict: bool = False,
    *,
    intrinsics: np.ndarray | Sequence[float] | None = None,
) -> Iterator[Episode]:
    """Standardised episodes of one split; bad records are skipped with a warning unless ``strict``.

    ``intrinsics``: DROID's exterior-camera K at 320x180, (3, 3) or ``(fx, fy, cx, cy)`` (DROID logs
    none; default ``DROID_DEFAULT_K``); ignored for RT-1.
    """
    yield from open_rlds(data_dir, strict=strict, intrinsics=intrinsics).episodes(split)


def load_episode(
    data_dir: str | os.PathLike[str],
    episode_id: str,
    *,
    intrinsics: np.ndarray | Sequence[float] | None = None,
) -> Episode:
    """One episode by id (``"train_000003"``); raises if it is missing or corrupt."""
    return open_rlds(data_dir, strict=True, intrinsics=intrinsics).load_episode(episode_id)
