"""Synthetic episodes: a pybullet tabletop scene, scripted skills, and an RLDS (TFDS) writer.

``sample_start`` gives the env a start state without any dataset: a freshly randomised scene
rendered by the same renderer that makes the synthetic datasets (scenes are cached per process,
so a reset costs one render).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from kinematics import PinholeCamera
from vap_env.data.synth.scene import LAYOUTS, Scene, SceneSpec, sample_scene
from vap_env.data.synth.scripted import SKILL_NAMES, Rollout, execute, setup_task
from vap_env.data.synth.writer import (
    SynthConfig,
    generate,
    hashed_text_embedding,
    render_episode,
    scene_for,
)


def dataset_image_size(robot: str) -> tuple[int, int]:
    """(width, height) at which the synthetic datasets of ``robot`` are rendered (its schema's)."""
    from vap_env.data.schemas import SCHEMAS

    sizes = {s.robot: (s.width, s.height) for s in SCHEMAS.values()}
    if robot not in sizes:
        raise KeyError(f"no dataset schema for robot {robot!r}; known: {sorted(sizes)}")
    return sizes[robot]


def render_as_dataset(scene: Scene, camera: PinholeCamera) -> np.ndarray:
    """``scene`` seen by ``camera``, made as a training frame is -> (H, W, 3) uint8 at its size.

    Training frames are rendered at the dataset's size and area-averaged down to the model's by
    the clip loader; rendering at the model's size directly aliases thin edges (26-28 dB PSNR
    apart from the averaged frame), so a start frame made that way is unlike any the model saw.
    """
    width, height = dataset_image_size(scene.robot.name)
    if (camera.width, camera.height) == (width, height):
        return scene.render(camera)[0]
    image, _ = scene.render(camera.resized(width, height))
    return cv2.resize(image, (camera.width, camera.height), interpolation=cv2.INTER_AREA)


@dataclass
class StartState:
    """A start state for the env: the first frame and the robot state it shows."""

    image: np.ndarray  # (H, W, 3) uint8
    instruction: str
    q: np.ndarray  # (J,) float32 arm joints
    gripper: float  # 0 open .. 1 closed
    tcp_pose: np.ndarray  # (7,) float32 base frame [x, y, z, qx, qy, qz, qw]
    camera: PinholeCamera  # the camera of ``image`` (the robot's un-jittered default camera)
    skill: str = ""
    scene: dict[str, Any] = field(default_factory=dict)  # SceneSpec.to_dict() incl. the task


def sample_start(robot: str, seed: int, width: int, height: int) -> StartState:
    """Randomise a scene and a task for ``robot`` and render its first frame at ``width`` x ``height``.

    Deterministic in ``seed``. The arm starts at its home pose (where the scripted skills start);
    the camera is the robot's default camera resized to the requested size, without jitter, so the
    env's skeleton prompt and this image agree exactly.
    """
    if robot not in LAYOUTS:
        raise ValueError(
            f"sample_start: no synthetic scene for robot {robot!r}; known: {sorted(LAYOUTS)}. "
            "Start it from your own frame and state instead: env.reset(options={'image': ..., "
            "'instruction': ..., 'joints' or 'tcp_pose': ..., 'gripper': ...}) or "
            "{'episode': Episode}"
        )
    if width < 8 or height < 8:
        raise ValueError(f"sample_start: image size {width}x{height} is too small (>= 8x8)")
    scene = scene_for(robot)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    spec = sample_scene(scene.robot, rng, width, height, jitter_camera=False)
    skill = SKILL_NAMES[int(rng.integers(0, len(SKILL_NAMES)))]
    spec = setup_task(scene, spec, skill, rng, fail_prob=0.0)
    scene.reset(spec)
    camera = scene.camera(spec.cameras[0].name)
    image = render_as_dataset(scene, camera)
    q = np.asarray(spec.start_q, dtype=np.float32)
    return StartState(
        image=image,
        instruction=spec.task["instruction"],
        q=q,
        gripper=0.0,
        tcp_pose=scene.robot.ee_pose(q.astype(np.float64)).astype(np.float32),
        camera=camera,
        skill=skill,
        scene=spec.to_dict(),
    )


__all__ = [
    "SKILL_NAMES",
    "Rollout",
    "Scene",
    "SceneSpec",
    "StartState",
    "SynthConfig",
    "dataset_image_size",
    "execute",
    "generate",
    "hashed_text_embedding",
    "render_as_dataset",
    "render_episode",
    "sample_scene",
    "sample_start",
    "setup_task",
]
