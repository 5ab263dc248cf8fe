"""Write synthetic episodes as a real TFDS/RLDS dataset directory in RT-1's or DROID's schema.

Layout (like the public copies, readable by ``tfds.builder_from_directory``)::

    OUT/fractal20220817_data/0.1.0/                     (DROID: OUT/droid/1.0.1/)
        fractal20220817_data-train.tfrecord-00000-of-00002   one record = one episode
        fractal20220817_data-val.tfrecord-00000-of-00001
        fractal20220817_data-test.tfrecord-00000-of-00001
        features.json  dataset_info.json                     (split shard lengths, byte counts)
        ground_truth/<split>/<episode_id>.npz                vap_env.data.GroundTruth

Resumable: every episode is rendered into ``OUT/.vap_synth_work/<name>-<version>/`` (serialised
record + ground truth, each written atomically); a rerun with the same config skips the finished
ones. Only the last step writes the shards and metadata into a temporary directory and renames it
to ``<version>``, so an interrupted run never leaves a directory with ``dataset_info.json``.

Values the scene cannot know (documented neutral fills):

RT-1 ``observation``: ``natural_language_embedding`` = ``hashed_text_embedding(instruction)`` (a
deterministic 512-d bag-of-words hash, unit norm; *not* the Universal Sentence Encoder);
``height_to_bottom`` = TCP height above the table; ``orientation_start`` = TCP quaternion at step 0;
``src_rotation`` = identity quaternion; ``orientation_box`` and ``robot_orientation_positions_box``
= zeros; ``vector_to_go`` / ``rotation_delta_to_go`` = position / axis-angle from the current TCP
pose to the final one; ``workspace_bounds`` = rows [min xyz, max xyz, 0] of the table workspace.
RT-1 ``action``: ``world_vector`` and ``rotation_delta`` follow the ``Episode`` convention
(``vap_env.data.episode``); ``gripper_closedness_action`` is the relative command (the change of
``gripper_closedness_commanded``: + close, - open), whereas the ``Episode`` replays the measured
change of ``gripper_closed``, which stalls on a grasped object; ``terminate_episode`` = [1, 0, 0]
on the last step and [0, 1, 0] before; base displacements = zeros. ``reward`` = 1.0 on the last step of a
successful episode, else 0.

DROID: ``language_instruction_2/3`` = ""; with ``extra_cameras=False`` only exterior camera 1 is
rendered and the other two images are black (their extrinsics are still written); ``action_dict`` = the next step's state (the last step
holds), ``cartesian_position`` = the flange pose (``panda_link8``, as Polymetis logs it; the TCP
is 0.15 m further out), velocities = DROID's normalised commands (the change to the next step over
DROID's per-step maxima, 0.075 m / 0.15 rad / 0.2 rad per joint / 0.25 of the gripper range,
clipped to [-1, 1]); ``action`` = ``action_dict`` cartesian_position (6) + gripper_position (1), as
DROID's RLDS conversion writes it; ``discount`` = 1; ``episode_metadata/file_path`` =
``synthetic/<success|failure>/<episode_id>/trajectory.h5``; extrinsics = the cameras' poses at
step 0 (the wrist camera moves with the hand).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kinematics.transforms import invert, matrix_to_pose, pose_to_matrix, quat_to_matrix
from vap_env.data.episode import GroundTruth
from vap_env.data.rotations import ee_delta_actions, matrix_to_axis_angle, pose_to_xyz_rpy
from vap_env.data.schemas import DatasetSchema, get_schema
from vap_env.data.synth.scene import LAYOUTS, Scene, sample_scene
from vap_env.data.synth.scripted import SKILL_NAMES, Rollout, execute, setup_task

WORK_DIR = ".vap_synth_work"
DROID_IMAGES = ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left")
# DROID's largest commanded change per 15 Hz step (droid/robot_ik/robot_ik_solver.py): its
# velocity fields are changes divided by these. Cartesian: 0.075 m on xyz, 0.15 rad on rpy.
DROID_MAX_CARTESIAN_DELTA = np.array([0.075, 0.075, 0.075, 0.15, 0.15, 0.15])
DROID_MAX_JOINT_DELTA = 0.2  # rad
DROID_MAX_GRIPPER_DELTA = 0.25  # of the 0 (open) .. 1 (closed) range
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SynthConfig:
    """What to generate; the same config always produces the same episodes (trajectories, masks,
    outcomes; images up to rare one-level differences of pybullet's TinyRenderer)."""

    schema: str = field(default="rt1", metadata={"help": "dataset schema: rt1 or droid"})
    episodes: int = field(default=10, metadata={"help": "number of episodes over all splits"})
    out: str = field(default="data/synth", metadata={"help": "output root directory"})
    num_frames: int = field(
        default=33, metadata={"help": "frames per episode (1 context + 4 chunks of 8)"}
    )
    seed: int = field(default=0, metadata={"help": "base random seed"})
    val_fraction: float = field(default=0.1, metadata={"help": "fraction of episodes in val"})
    test_fraction: float = field(default=0.1, metadata={"help": "fraction of episodes in test"})
    skills: tuple[str, ...] = field(
        default=SKILL_NAMES, metadata={"help": "scripted skills, cycled"}
    )
    fail_prob: float = field(
        default=0.1, metadata={"help": "probability of a deliberately missed grasp"}
    )
    episodes_per_shard: int = field(default=64, metadata={"help": "episodes per tfrecord shard"})
    jpeg_quality: int = field(default=95, metadata={"help": "JPEG quality of the image features"})
    extra_cameras: bool = field(
        default=True,
        metadata={"help": "DROID: also render exterior camera 2 and the wrist camera (else black)"},
    )
    workers: int = field(default=0, metadata={"help": "rendering processes (0 = in this process)"})
    overwrite: bool = field(
        default=False, metadata={"help": "replace an existing dataset directory"}
    )
    progress: bool = field(default=True, metadata={"help": "show a tqdm progress bar"})

    def __post_init__(self) -> None:
        get_schema(self.schema)
        if self.episodes < 1:
            raise ValueError(f"episodes = {self.episodes}; generate at least 1")
        if self.num_frames < 2:
            raise ValueError(f"num_frames = {self.num_frames}; an episode needs at least 2 frames")
        if not (
            0 <= self.val_fraction < 1
            and 0 <= self.test_fraction < 1
            and self.val_fraction + self.test_fraction < 1
        ):
            raise ValueError(
                f"val_fraction = {self.val_fraction}, test_fraction = {self.test_fraction}: each must be "
                "in [0, 1) and their sum < 1"
            )
        unknown = [s for s in self.skills if s not in SKILL_NAMES]
        if unknown or not self.skills:
            raise ValueError(
                f"skills {list(self.skills)}: unknown {unknown}; choose from {list(SKILL_NAMES)}"
            )
        if self.episodes_per_shard < 1 or self.workers < 0 or not (1 <= self.jpeg_quality <= 100):
            raise ValueError(
                f"episodes_per_shard = {self.episodes_per_shard} (>= 1), workers = {self.workers} "
                f"(>= 0), jpeg_quality = {self.jpeg_quality} (1..100): one is out of range"
            )

    @property
    def dataset(self) -> DatasetSchema:
        """The schema ``schema`` names."""
        return get_schema(self.schema)

    def recipe(self) -> dict[str, Any]:
        """The fields that decide the content of the records (a resumed run must match them)."""
        d = asdict(self)
        for k in ("out", "workers", "overwrite", "progress"):
            d.pop(k)
        d["skills"] = list(self.skills)
        return d


def hashed_text_embedding(text: str, dim: int = 512) -> np.ndarray:
    """Deterministic unit-norm bag-of-words embedding: each lower-cased word seeds a Gaussian vector.

    A stand-in for RT-1's Universal Sentence Encoder field: equal instructions get equal vectors and
    instructions sharing words are correlated, with no model to download. text -> (dim,) float32.
    """
    words = text.lower().split() or [""]
    vec = np.zeros(dim)
    for w in words:
        seed = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
        vec += np.random.default_rng(seed).standard_normal(dim)
    return (vec / np.linalg.norm(vec)).astype(np.float32)


def split_plan(cfg: SynthConfig) -> list[tuple[str, str]]:
    """(split, episode_id) for every global episode index; ids are ``<split>_<index:06d>``."""
    n_val = round(cfg.episodes * cfg.val_fraction)
    n_test = round(cfg.episodes * cfg.test_fraction)
    if cfg.episodes >= 3:  # every split gets at least one episode when there are enough
        n_val, n_test = (
            max(n_val, 1 if cfg.val_fraction > 0 else 0),
            max(n_test, 1 if cfg.test_fraction > 0 else 0),
        )
    n_train = cfg.episodes - n_val - n_test
    plan = []
    for split, n in zip(SPLITS, (n_train, n_val, n_test), strict=True):
        plan += [(split, f"{split}_{i:06d}") for i in range(n)]
    return plan


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for an image of shape {image.shape}")
    return buf.tobytes()


def _rt1_steps(ro: Rollout, scene_layout: Any, quality: int) -> dict[str, Any]:
    t_len = ro.tcp_pose.shape[0]
    pose = ro.tcp_pose.astype(np.float64)
    delta = ee_delta_actions(pose)
    # RT-1's gripper_closedness_action is the relative *command* (+ close, - open). The measured
    # closedness stalls when the fingers meet an object; the standardised Episode replays that
    # measured change instead (see vap_env.data.rlds), which is what the video shows.
    grip_action = np.zeros(t_len)
    grip_action[:-1] = np.diff(ro.gripper_command.astype(np.float64))
    rot = quat_to_matrix(pose[:, 3:])
    to_go_rot = matrix_to_axis_angle(rot[-1][None] @ np.swapaxes(rot, -1, -2))
    lay = scene_layout
    bounds = np.array(
        [
            [lay.object_x[0] - 0.1, lay.object_y[0] - 0.1, lay.table_top_z],
            [lay.object_x[1] + 0.1, lay.object_y[1] + 0.1, lay.table_top_z + 0.4],
            [0.0, 0.0, 0.0],
        ],
        dtype=np.float32,
    )
    embedding = hashed_text_embedding(ro.instruction)
    steps = []
    for t in range(t_len):
        last = t == t_len - 1
        steps.append(
            {
                "observation": {
                    "image": _jpeg(ro.images["image"][t], quality),
                    "natural_language_instruction": ro.instruction,
                    "natural_language_embedding": embedding,
                    "base_pose_tool_reached": pose[t].astype(np.float32),
                    "gripper_closed": np.array([ro.gripper[t]], np.float32),
                    "gripper_closedness_commanded": np.array([ro.gripper_command[t]], np.float32),
                    "height_to_bottom": np.array([pose[t, 2] - lay.table_top_z], np.float32),
                    "orientation_box": np.zeros((2, 3), np.float32),
                    "orientation_start": pose[0, 3:].astype(np.float32),
                    "robot_orientation_positions_box": np.zeros((3, 3), np.float32),
                    "rotation_delta_to_go": to_go_rot[t].astype(np.float32),
                    "src_rotation": np.array([0, 0, 0, 1], np.float32),
                    "vector_to_go": (pose[-1, :3] - pose[t, :3]).astype(np.float32),
                    "workspace_bounds": bounds,
                },
                "action": {
                    "world_vector": delta[t, :3].astype(np.float32),
                    "rotation_delta": delta[t, 3:].astype(np.float32),
                    "gripper_closedness_action": np.array([grip_action[t]], np.float32),
                    "terminate_episode": np.array([1, 0, 0] if last else [0, 1, 0], np.int32),
                    "base_displacement_vector": np.zeros(2, np.float32),
                    "base_displacement_vertical_rotation": np.zeros(1, np.float32),
                },
                "is_first": t == 0,
                "is_last": last,
                "is_terminal": last,
                "reward": np.float32(1.0 if (last and ro.success) else 0.0),
            }
        )
    return {"steps": steps}


def _droid_steps(ro: Rollout, scene_layout: Any, quality: int, episode_id: str) -> dict[str, Any]:
    schema = get_schema("droid")
    q = ro.q.astype(np.float64)
    g = ro.gripper.astype(np.float64)[:, None]
    # DROID logs the flange pose, not the TCP's.
    flange = pose_to_matrix(ro.tcp_pose.astype(np.float64)) @ invert(schema.cartesian_to_tcp())
    cart = pose_to_xyz_rpy(matrix_to_pose(flange))
    nxt = np.r_[1 : len(q), len(q) - 1]  # index of the next step (the last one holds)
    cart_delta = cart[nxt] - cart
    cart_delta[:, 3:] = (cart_delta[:, 3:] + np.pi) % (2 * np.pi) - np.pi  # wrap angle differences
    # DROID's velocities are its controller's normalised commands: the per-step change over the
    # largest change one 15 Hz step may make, clipped to [-1, 1].
    cart_vel = np.clip(cart_delta / DROID_MAX_CARTESIAN_DELTA, -1.0, 1.0)
    joint_vel = np.clip((q[nxt] - q) / DROID_MAX_JOINT_DELTA, -1.0, 1.0)
    gripper_vel = np.clip((g[nxt] - g) / DROID_MAX_GRIPPER_DELTA, -1.0, 1.0)
    black = _jpeg(np.zeros(get_schema("droid").image_shape, np.uint8), quality)
    images = {
        name: [_jpeg(f, quality) for f in ro.images[name]]
        if name in ro.images
        else [black] * len(q)
        for name in DROID_IMAGES
    }
    steps = []
    for t in range(len(q)):
        last = t == len(q) - 1
        n = nxt[t]
        steps.append(
            {
                "is_first": t == 0,
                "is_last": last,
                "is_terminal": last,
                "language_instruction": ro.instruction,
                "language_instruction_2": "",
                "language_instruction_3": "",
                "observation": {
                    "gripper_position": g[t],
                    "cartesian_position": cart[t],
                    "joint_position": q[t],
                    **{name: images[name][t] for name in DROID_IMAGES},
                },
                "action_dict": {
                    "gripper_position": g[n],
                    "gripper_velocity": gripper_vel[t],
                    "cartesian_position": cart[n],
                    "cartesian_velocity": cart_vel[t],
                    "joint_position": q[n],
                    "joint_velocity": joint_vel[t],
                },
                # DROID's RLDS conversion: the commanded Cartesian position + gripper position.
                "action": np.concatenate([cart[n], g[n]]),
                "discount": np.float32(1.0),
                "reward": np.float32(1.0 if (last and ro.success) else 0.0),
            }
        )
    outcome = "success" if ro.success else "failure"
    metadata = {
        "recording_folderpath": f"synthetic/{outcome}/{episode_id}/recordings",
        "file_path": f"synthetic/{outcome}/{episode_id}/trajectory.h5",
        "building": "vap-env synthetic scene",
        "collector_id": "vap-env",
        "date": "",
        "extrinsics_exterior_cam_1": ro.cameras["exterior_image_1_left"].xyz_rpy,
        "extrinsics_exterior_cam_2": ro.cameras["exterior_image_2_left"].xyz_rpy,
        "extrinsics_wrist_cam": ro.cameras["wrist_image_left"].xyz_rpy,
    }
    return {"steps": steps, "episode_metadata": metadata}


# ---------------------------------------------------------------------------------------------
# Rendering one episode (in this process or a worker); scenes are cached per process.
# ---------------------------------------------------------------------------------------------
_SCENES: dict[str, Scene] = {}


def scene_for(robot_name: str) -> Scene:
    """This process's scene for ``robot_name`` (built once; ``reset`` re-randomises it)."""
    if robot_name not in _SCENES:
        from kinematics import load_robot

        _SCENES[robot_name] = Scene(load_robot(robot_name))
    return _SCENES[robot_name]


def episode_seed(cfg: SynthConfig, index: int) -> np.random.Generator:
    """The generator of global episode ``index`` (independent of worker count and order)."""
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, index]))


def render_episode(cfg: SynthConfig, index: int) -> Rollout:
    """Sample, set up and execute global episode ``index`` of ``cfg`` (deterministic)."""
    schema = cfg.dataset
    scene = scene_for(schema.robot)
    rng = episode_seed(cfg, index)
    skill = cfg.skills[index % len(cfg.skills)]
    spec = sample_scene(scene.robot, rng, schema.width, schema.height)
    spec = setup_task(scene, spec, skill, rng, cfg.fail_prob)
    render = None if cfg.extra_cameras else (spec.cameras[0].name,)
    return execute(scene, spec, cfg.num_frames, render=render)


def ground_truth(ro: Rollout) -> GroundTruth:
    """The ground truth stored beside the dataset for one rollout."""
    return GroundTruth(
        gripper_masks=ro.gripper_masks,
        object_masks=ro.object_masks,
        joint_positions=ro.q,
        gripper=ro.gripper,
        scene=ro.spec.to_dict(),
        skill=ro.skill,
        success=ro.success,
    )


def encode_example(cfg: SynthConfig, ro: Rollout, episode_id: str) -> dict[str, Any]:
    """The nested example dict of one rollout in the schema of ``cfg`` (images JPEG-encoded)."""
    lay = LAYOUTS[cfg.dataset.robot]
    if cfg.dataset.key == "rt1":
        return _rt1_steps(ro, lay, cfg.jpeg_quality)
    return _droid_steps(ro, lay, cfg.jpeg_quality, episode_id)


def _work_one(cfg: SynthConfig, index: int, split: str, episode_id: str, work: str) -> str:
    """Render one episode into the work dir: ground truth first, the record last (= done marker)."""
    ro = render_episode(cfg, index)
    record = cfg.dataset.features().serialize_example(encode_example(cfg, ro, episode_id))
    ground_truth(ro).save(Path(work) / "ground_truth" / split / f"{episode_id}.npz")
    path = Path(work) / "records" / f"{episode_id}.tfexample"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(record)
    tmp.replace(path)
    return episode_id


def _check_work_dir(work: Path, cfg: SynthConfig) -> None:
    recipe_path = work / "recipe.json"
    recipe = cfg.recipe()
    if recipe_path.is_file():
        old = json.loads(recipe_path.read_text())
        if old != recipe:
            diff = sorted(k for k in set(old) | set(recipe) if old.get(k) != recipe.get(k))
            raise ValueError(
                f"{work} holds an unfinished run with a different config (differs in {diff}); rerun "
                f"with the same settings to resume, or delete {work} to start over"
            )
    else:
        work.mkdir(parents=True, exist_ok=True)
        recipe_path.write_text(json.dumps(recipe, indent=1))


def generate(cfg: SynthConfig) -> Path:
    """Render (or resume) all episodes of ``cfg`` and write the dataset; returns the version dir."""
    schema = cfg.dataset
    root = Path(cfg.out)
    final = root / schema.name / schema.version
    if final.exists():
        if not cfg.overwrite:
            raise FileExistsError(
                f"{final} already exists; pass overwrite=True (--overwrite) to replace it or choose another --out"
            )
    work = root / WORK_DIR / f"{schema.name}-{schema.version}"
    _check_work_dir(work, cfg)
    plan = split_plan(cfg)
    todo = [
        (i, split, eid)
        for i, (split, eid) in enumerate(plan)
        if not (work / "records" / f"{eid}.tfexample").is_file()
    ]
    for _ in _run(cfg, todo, str(work), total=len(plan), done=len(plan) - len(todo)):
        pass
    _finalize(cfg, plan, work, final)
    shutil.rmtree(work)
    work_root = root / WORK_DIR
    if work_root.is_dir() and not any(work_root.iterdir()):
        work_root.rmdir()
    return final


def _run(
    cfg: SynthConfig, todo: list[tuple[int, str, str]], work: str, total: int, done: int
) -> Iterator[str]:
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total, initial=done, unit="ep", desc=f"synth {cfg.schema}", disable=not cfg.progress
    )
    try:
        if cfg.workers == 0:
            for i, split, eid in todo:
                yield _work_one(cfg, i, split, eid, work)
                bar.update(1)
            return
        # spawn, not fork: TensorFlow (imported by the caller for writing) is not fork-safe.
        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_work_one, cfg, i, split, eid, work) for i, split, eid in todo]
            for fut in futures:
                yield fut.result()
                bar.update(1)
    finally:
        bar.close()


def _finalize(cfg: SynthConfig, plan: list[tuple[str, str]], work: Path, final: Path) -> None:
    """Write shards, ground truth and metadata into a temp dir, then rename it into place."""
    from vap_env._optional import require

    tf = require("tensorflow")
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import naming

    schema = cfg.dataset
    tmp = final.with_name(f"{final.name}.incomplete-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    split_infos = []
    for split in SPLITS:
        ids = [eid for s, eid in plan if s == split]
        if not ids:
            continue
        n_shards = -(-len(ids) // cfg.episodes_per_shard)
        template = naming.ShardedFileTemplate(
            data_dir=tmp, dataset_name=schema.name, split=split, filetype_suffix="tfrecord"
        )
        lengths, num_bytes = [], 0
        for shard in range(n_shards):
            chunk = ids[shard * len(ids) // n_shards : (shard + 1) * len(ids) // n_shards]
            with tf.io.TFRecordWriter(
                os.fspath(template.sharded_filepath(shard_index=shard, num_shards=n_shards))
            ) as w:
                for eid in chunk:
                    record = (work / "records" / f"{eid}.tfexample").read_bytes()
                    num_bytes += len(record)
                    w.write(record)
            lengths.append(len(chunk))
        gt_src = work / "ground_truth" / split
        shutil.copytree(gt_src, tmp / "ground_truth" / split)
        split_infos.append(
            tfds.core.SplitInfo(
                name=split, shard_lengths=lengths, num_bytes=num_bytes, filename_template=template
            )
        )
    identity = tfds.core.DatasetIdentity(
        name=schema.name,
        version=tfds.core.Version(schema.version),
        data_dir=os.fspath(tmp),
        module_name="",
    )
    info = tfds.core.DatasetInfo(
        builder=identity,
        description=(
            f"Synthetic {schema.name} episodes rendered by vap-env's pybullet scene (robot "
            f"{schema.robot}, {cfg.num_frames} frames, seed {cfg.seed}). Ground truth in ground_truth/."
        ),
        features=schema.features(),
        homepage="https://github.com/vap-env/vap-env",
        split_dict=tfds.core.SplitDict(split_infos),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info.write_to_directory(os.fspath(tmp))
    (tmp / "vap_synth_recipe.json").write_text(json.dumps(cfg.recipe(), indent=1))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
