"""The batched core of the VAP envs: N env slots stepped together with one world-model call.

``VAPEnv`` is this core with one slot and ``VAPVectorEnv`` with ``num_envs`` slots, so the single env
and the vector env run the same code. One step of the slots ``idx`` with action chunks ``(n, K, D)``:

```
actions --ActionMode.rollout--> joints (K, J) per slot --FK--> keypoints (K, P, 3)
        --SkeletonRenderer--> skeleton (K, H, W, 3) per slot
[context image (n, H, W, 3), skeleton of the context state + K new ones (n, K+1, H, W, 3), instructions]
        --WorldModel.generate_chunk (one call, one torch.Generator per slot)--> frames (n, K, H, W, 3)
```

Seeding: every slot owns a NumPy generator (the env's ``np_random``) and a ``torch.Generator``.
A reset draws, from the slot's NumPy generator, the seed of the built-in starting scene and the seed
of the slot's torch generator, so a seeded reset fixes the whole rollout, and N slots seeded with
``s_i`` reproduce N single envs seeded with ``s_i``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from gymnasium import spaces

from vap_env.actions import as_numbers, make_action_mode, validate_chunk
from vap_env.config import did_you_mean
from vap_env.data.intrinsics import as_intrinsics
from vap_env.tasks import Task, TaskStep, make_task

if TYPE_CHECKING:
    from kinematics import PinholeCamera
    from vap_env.data.episode import Episode
    from vap_env.env import EnvConfig

__all__ = ["RESET_OPTION_KEYS", "SlotStart", "VAPCore", "resolve_weights"]

# Keys of reset(options=...) that describe a starting state; "episode" excludes all of them.


def _one_thread_after_fork() -> None:
    # A child forked from a process whose OpenMP pool has run (any torch op) hangs in its first
    # parallel region: Gymnasium's AsyncVectorEnv forks its workers by default on Linux. One
    # thread per child never enters that pool (as torch's DataLoader workers do), and N workers
    # side by side are the parallelism anyway.
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_thread_after_fork)

STATE_KEYS = ("image", "instruction", "joints", "tcp_pose", "gripper", "camera")
RESET_OPTION_KEYS = (*STATE_KEYS, "episode")
# |xyz| bound of the TCP in ``proprio``: both robots reach less than 2 m from their base.
TCP_POSITION_BOUND_M = 3.0


def resolve_weights(weights: str) -> str:
    """Map a packaged checkpoint name to its directory; anything else goes to ``load_world_model``.

    ``weights`` is a packaged checkpoint (a directory ``vap_env/assets/weights/<name>``), a world-model
    preset name (e.g. ``"tiny"``: random init, seeded), a local directory or a hub id.
    """
    packaged = Path(str(resources.files("vap_env").joinpath("assets", "weights", weights)))
    if packaged.is_dir():
        return str(packaged)
    from vap_env.models.config import load_model_preset, model_presets

    if weights in model_presets():
        preset = load_model_preset(weights)
        if preset.backbone is None and preset.weights is None:
            # say so loudly: a user comparing policies on noise frames would otherwise not notice
            warnings.warn(
                f"weights={weights!r} is the {weights!r} model preset with random (seeded) weights: "
                "the generated frames are noise. Pass a trained checkpoint (weights='tiny-rt1', "
                "a directory from `vap-env train`, or a real preset with its backbone).",
                stacklevel=3,
            )
    return weights


@dataclass
class SlotStart:
    """A resolved starting state of one slot, at the model's resolution."""

    image: np.ndarray  # (H, W, 3) uint8
    instruction: str
    q: np.ndarray  # (J,) joint positions
    gripper: float  # 0 open .. 1 closed
    camera: PinholeCamera  # at the model resolution
    scene: Any = None  # SceneSpec of a synthetic start (built-in scene or synthetic episode)


def _scene_of(episode: Episode) -> Any:
    """The ``SceneSpec`` of a synthetic episode (its ground truth's scene), else None."""
    gt = episode.ground_truth
    if gt is None or not gt.scene:
        return None
    from vap_env.data.synth import SceneSpec

    return SceneSpec.from_dict(gt.scene)


class VAPCore:
    """State and step of ``num_slots`` env slots (see the module docstring).

    Args:
        cfg: the env configuration.
        num_slots: number of env slots (1 for ``VAPEnv``).
        task: a ``Task`` instance, or None for the registered task ``cfg.task``.
    """

    def __init__(self, cfg: EnvConfig, num_slots: int, task: Task | None = None) -> None:
        from kinematics import SkeletonRenderer, load_robot
        from vap_env.env import check_device
        from vap_env.models import load_world_model

        if num_slots < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_slots}")
        self.cfg = cfg
        self.num_slots = num_slots
        # A copy: the same Task object handed to several envs (SyncVectorEnv over gym.make with
        # task=ReachTask()) would mix their per-slot state, as every single env is slot 0.
        self.task = copy.deepcopy(task) if task is not None else make_task(cfg.task)
        if not isinstance(self.task, Task):
            raise TypeError(f"task must be a vap_env.tasks.Task, got {type(self.task).__name__}")
        self.robot = load_robot(cfg.robot, geometry=False)  # kinematics only: no meshes to load
        check_device(cfg.device, available=True)
        self.world_model = load_world_model(resolve_weights(cfg.weights), device=cfg.device)
        mcfg = self.world_model.config
        self.height, self.width, self.chunk_frames = mcfg.height, mcfg.width, mcfg.chunk_frames
        self.num_joints = len(self.robot.joint_names)
        self.action_mode = make_action_mode(cfg.action_mode, self.robot, cfg.action_limits)
        self.renderer = SkeletonRenderer(self.robot.spec, self.width, self.height)
        # A spec without a camera still drives the env: each reset then passes its own camera.
        self.default_camera: PinholeCamera | None = None
        if self.robot.spec.camera is not None:
            spec_cam = self.robot.spec.camera
            native = self.robot.default_camera(spec_cam.width, spec_cam.height)  # K as written
            k = as_intrinsics(cfg.intrinsics)
            if k is not None:
                native = dataclasses.replace(native, K=k)
            self.default_camera = native.resized(self.width, self.height)
        elif cfg.intrinsics:
            raise ValueError(
                f"intrinsics={cfg.intrinsics} set the default camera's K, but robot "
                f"{self.robot.name!r} has no `camera:` in its spec; pass reset option 'camera'"
            )
        self.single_action_space, self.single_observation_space = self._spaces()
        self._action_low = self.single_action_space.low.astype(np.float64)
        self._action_high = self.single_action_space.high.astype(np.float64)

        n, h, w, j = num_slots, self.height, self.width, self.num_joints
        self.q = np.zeros((n, j))
        self.gripper = np.zeros(n)
        self.tcp = np.zeros((n, 7))
        self.image = np.zeros((n, h, w, 3), np.uint8)
        self.skeleton = np.zeros((n, h, w, 3), np.uint8)
        self.instructions = [""] * n
        self.cameras: list[PinholeCamera | None] = [self.default_camera] * n
        self.elapsed = np.zeros(n, np.int64)
        self.started = np.zeros(n, bool)  # reset at least once
        self.ended = np.zeros(n, bool)  # terminated or truncated since the last reset
        self.np_randoms: list[np.random.Generator | None] = [None] * n
        self.generators = [torch.Generator() for _ in range(n)]

    # ------------------------------------------------------------------ spaces
    def _spaces(self) -> tuple[spaces.Box, spaces.Dict]:
        low, high = self.action_mode.bounds()
        k = self.chunk_frames
        action_space = spaces.Box(
            np.tile(low, (k, 1)).astype(np.float32),
            np.tile(high, (k, 1)).astype(np.float32),
            dtype=np.float32,
        )
        lower = np.asarray(self.robot.lower, np.float64)
        upper = np.asarray(self.robot.upper, np.float64)
        b = TCP_POSITION_BOUND_M
        proprio_low = np.concatenate([lower, [-b] * 3, [-1.0] * 4, [0.0]]).astype(np.float32)
        proprio_high = np.concatenate([upper, [b] * 3, [1.0] * 4, [1.0]]).astype(np.float32)
        image = spaces.Box(0, 255, (self.height, self.width, 3), np.uint8)
        observation_space = spaces.Dict(
            {
                "image": image,
                "skeleton": spaces.Box(0, 255, (self.height, self.width, 3), np.uint8),
                "proprio": spaces.Box(proprio_low, proprio_high, dtype=np.float32),
            }
        )
        return action_space, observation_space

    # ------------------------------------------------------------------ observation
    def proprio(self, i: int) -> np.ndarray:
        """(J + 8,) float32 [joints, tcp_pose (7), gripper] of slot ``i``."""
        return np.concatenate([self.q[i], self.tcp[i], [self.gripper[i]]]).astype(np.float32)

    def observation(self, i: int) -> dict[str, np.ndarray]:
        """The observation of slot ``i`` (fresh arrays: callers keep them)."""
        return {
            "image": self.image[i].copy(),
            "skeleton": self.skeleton[i].copy(),
            "proprio": self.proprio(i),
        }

    def render(self, i: int) -> np.ndarray:
        """rgb_array of slot ``i``: the frame (H, W, 3), or frame | skeleton (H, 2W, 3)."""
        if self.cfg.render_skeleton:
            return np.concatenate([self.image[i], self.skeleton[i]], axis=1)
        return self.image[i].copy()

    # ------------------------------------------------------------------ reset
    def reset_slot(
        self, i: int, np_random: np.random.Generator, options: Mapping[str, Any] | None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a new episode in slot ``i``; ``np_random`` becomes the slot's generator.

        Returns the observation and the reset info ``{"instruction", "scene" (the ``SceneSpec`` of a
        synthetic start: built-in scene or synthetic episode), ...task entries}``.
        """
        self.np_randoms[i] = np_random
        scene_seed, torch_seed = (int(s) for s in np_random.integers(0, 2**62, size=2))
        try:
            start = self._start_state(dict(options or {}), scene_seed)
        except Exception:
            self.started[i] = False  # a failed reset leaves the slot needing one
            raise
        self.generators[i].manual_seed(torch_seed)
        self.q[i] = start.q
        self.gripper[i] = start.gripper
        self.tcp[i] = self.robot.ee_pose(start.q)
        self.image[i] = start.image
        self.instructions[i] = start.instruction
        self.cameras[i] = start.camera
        self.skeleton[i] = self._render_skeleton(i, start.q[None], np.array([start.gripper]))[0]
        self.elapsed[i] = 0
        self.started[i] = True
        self.ended[i] = False
        info: dict[str, Any] = {"instruction": start.instruction}
        if start.scene is not None:
            info["scene"] = start.scene
        info.update(self.task.reset(i, self.proprio(i), start.instruction, np_random))
        return self.observation(i), info

    def _start_state(self, options: dict[str, Any], scene_seed: int) -> SlotStart:
        unknown = sorted(set(options) - set(RESET_OPTION_KEYS))
        if unknown:
            hints = "".join(did_you_mean(k, list(RESET_OPTION_KEYS)) for k in unknown)
            raise ValueError(
                f"unknown reset option(s) {unknown}; allowed: {list(RESET_OPTION_KEYS)}.{hints}"
            )
        if "episode" in options:
            others = sorted(set(options) - {"episode"})
            if others:
                raise ValueError(
                    f"reset option 'episode' starts from the episode's own first state; do not also "
                    f"pass {others}"
                )
            return self._start_from_episode(options["episode"])
        if options:
            return self._start_from_state(options)
        from vap_env.data.synth import SceneSpec, sample_start

        start = sample_start(self.cfg.robot, scene_seed, self.width, self.height)
        return SlotStart(
            image=self._to_model_resolution(start.image, "built-in scene image"),
            instruction=start.instruction,
            q=np.asarray(start.q, np.float64),
            gripper=float(start.gripper),
            camera=start.camera.resized(self.width, self.height),
            scene=SceneSpec.from_dict(start.scene),
        )

    def _start_from_episode(self, episode: Episode) -> SlotStart:
        from vap_env.data.episode import Episode

        if not isinstance(episode, Episode):
            raise ValueError(
                f"reset option 'episode' must be a vap_env.data.Episode, got {type(episode).__name__}"
            )
        if episode.robot != self.cfg.robot:
            raise ValueError(
                f"episode {episode.episode_id!r} is from robot {episode.robot!r} but this env drives "
                f"{self.cfg.robot!r}; use the env of that dataset (VAP-RT1-v0: google_robot, "
                "VAP-DROID-v0: franka_panda)"
            )
        # Synthetic RT-1 episodes keep the generator's joints; real RT-1 logs only the TCP pose.
        gt = episode.ground_truth
        if gt is not None and gt.joint_positions is not None:
            q = self._check_joints(gt.joint_positions[0], "episode ground-truth joints")
        elif episode.joint_positions is not None:
            q = self._check_joints(episode.joint_positions[0], "episode joint_positions")
        else:
            q = self._ik_start(episode.tcp_pose[0], "episode tcp_pose[0]")
        return SlotStart(
            image=self._to_model_resolution(episode.frames[0], "episode frames[0]"),
            instruction=str(episode.instruction),
            q=q,
            gripper=self._check_gripper(episode.gripper[0], "episode gripper[0]"),
            camera=episode.camera.resized(self.width, self.height),
            scene=_scene_of(episode),
        )

    def _start_from_state(self, options: dict[str, Any]) -> SlotStart:
        missing = [k for k in ("image", "instruction", "gripper") if k not in options]
        if "joints" not in options and "tcp_pose" not in options:
            missing.append("joints or tcp_pose")
        if missing:
            raise ValueError(
                f"reset options {sorted(options)} do not describe a start state: missing {missing}. "
                "Pass image (H, W, 3) uint8, instruction, joints (J,) or tcp_pose (7,), gripper "
                "(and optionally camera), or {'episode': Episode}, or no options for the built-in scene"
            )
        if "joints" in options and "tcp_pose" in options:
            raise ValueError(
                "reset options give both 'joints' and 'tcp_pose'; pass one (the TCP pose follows "
                "from the joints, joints are solved by IK from a TCP pose)"
            )
        instruction = options["instruction"]
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(
                f"reset option 'instruction' must be a non-empty str, got {instruction!r}"
            )
        if "joints" in options:
            q = self._check_joints(options["joints"], "reset option 'joints'")
        else:
            q = self._ik_start(options["tcp_pose"], "reset option 'tcp_pose'")
        camera = options.get("camera", self.default_camera)
        if camera is None:
            raise ValueError(
                f"robot {self.robot.name!r} has no `camera:` in its spec, so reset options must "
                "include 'camera' (a kinematics.PinholeCamera of the image); or add `camera:` to "
                "the spec YAML"
            )
        if not hasattr(camera, "resized"):
            raise ValueError(
                f"reset option 'camera' must be a kinematics.PinholeCamera, got {type(camera).__name__}"
            )
        return SlotStart(
            image=self._to_model_resolution(options["image"], "reset option 'image'"),
            instruction=instruction,
            q=q,
            gripper=self._check_gripper(options["gripper"], "reset option 'gripper'"),
            camera=camera.resized(self.width, self.height),
        )

    def _to_model_resolution(self, image: Any, what: str) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
            got = (
                f"{image.dtype} array of shape {image.shape}"
                if isinstance(image, np.ndarray)
                else type(image).__name__
            )
            raise ValueError(f"{what} must be a uint8 array (H, W, 3), got {got}")
        if image.shape[2] != 3:
            raise ValueError(
                f"{what} must have 3 channels (RGB) in the last axis, got {image.shape}"
            )
        if image.shape[:2] == (self.height, self.width):
            return image.copy()
        return cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)

    def _check_joints(self, joints: Any, what: str) -> np.ndarray:
        q = as_numbers(joints, what)
        if q.shape != (self.num_joints,):
            raise ValueError(
                f"{what} must have shape ({self.num_joints},) for {self.cfg.robot} "
                f"{list(self.robot.joint_names)}, got {q.shape}"
            )
        if not np.all(np.isfinite(q)):
            raise ValueError(f"{what} must be finite, got {q}")
        lower, upper = np.asarray(self.robot.lower), np.asarray(self.robot.upper)
        outside = (q < lower - 1e-6) | (q > upper + 1e-6)
        if np.any(outside):
            j = int(np.argmax(outside))
            raise ValueError(
                f"{what}: joint {self.robot.joint_names[j]!r} = {q[j]:.4f} is outside its limits "
                f"[{lower[j]:.4f}, {upper[j]:.4f}]"
            )
        return np.clip(q, lower, upper)

    def _ik_start(self, tcp_pose: Any, what: str) -> np.ndarray:
        pose = as_numbers(tcp_pose, what)
        if pose.shape != (7,) or not np.all(np.isfinite(pose)):
            raise ValueError(f"{what} must be a finite (7,) [x, y, z, qx, qy, qz, qw], got {pose}")
        if np.linalg.norm(pose[3:]) < 1e-6:
            raise ValueError(f"{what} has a zero quaternion {pose[3:]}; pass a unit quaternion")
        result = self.robot.ik(pose, np.asarray(self.robot.home_q, np.float64))
        if result.pos_err_m > self.cfg.start_ik_tolerance_m:
            raise ValueError(
                f"{what} {np.round(pose, 4).tolist()} is not reachable by {self.cfg.robot}: IK "
                f"residual {result.pos_err_m * 1000:.1f} mm > start_ik_tolerance_m "
                f"{self.cfg.start_ik_tolerance_m * 1000:.1f} mm"
            )
        return np.clip(np.asarray(result.q, np.float64), self.robot.lower, self.robot.upper)

    @staticmethod
    def _check_gripper(value: Any, what: str) -> float:
        g = as_numbers(float(value) if isinstance(value, bool | np.bool_) else value, what)
        if g.size != 1 or not np.isfinite(g).all() or not 0.0 <= float(g.reshape(())) <= 1.0:
            raise ValueError(
                f"{what} must be one number in [0, 1] (0 open, 1 closed), got {value!r}"
            )
        return float(g.reshape(()))

    # ------------------------------------------------------------------ step
    def validate(self, action: Any, where: str = "action") -> np.ndarray:
        """One action chunk checked against the action space -> (K, D) float64."""
        return validate_chunk(
            action, self._action_low, self._action_high, clip=self.cfg.clip_actions, where=where
        )

    def _render_skeleton(self, i: int, q: np.ndarray, gripper: np.ndarray) -> np.ndarray:
        """Skeleton frames (T, H, W, 3) of joints ``q`` (T, J) and ``gripper`` (T,) in slot ``i``'s camera."""
        points = self.robot.keypoints(q, gripper)  # (T, P, 3)
        if self.cfg.skeleton == "gripper":  # NaN points are not drawn
            points = np.where(self.robot.gripper_mask[None, :, None], points, np.nan)
        return self.renderer.render(points, self.cameras[i])

    def step_slots(
        self, idx: Sequence[int], actions: np.ndarray
    ) -> list[tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]]:
        """Step the slots ``idx`` with validated chunks ``actions`` (n, K, D) -> per-slot results."""
        t0 = time.perf_counter()
        trajectories, skeletons, proprios = [], [], []
        for i, chunk in zip(idx, actions, strict=True):
            traj = self.action_mode.rollout(self.q[i], float(self.gripper[i]), chunk)
            tcp = self.robot.ee_pose(traj.q)  # (K, 7) of the joints actually reached
            proprios.append(
                np.concatenate([traj.q, tcp, traj.gripper[:, None]], axis=1).astype(np.float32)
            )
            skeletons.append(self._render_skeleton(i, traj.q, traj.gripper))
            trajectories.append((traj, tcp))
        skeleton = np.stack(skeletons)  # (n, K, H, W, 3)
        t1 = time.perf_counter()
        # Frame 0 of the skeleton prompt is the skeleton of the context frame's state.
        prompt = np.concatenate([self.skeleton[list(idx)][:, None], skeleton], axis=1)
        frames = self.world_model.generate_chunk(
            self.image[list(idx)],
            prompt,
            [self.instructions[i] for i in idx],
            generator=[self.generators[i] for i in idx],
            num_inference_steps=self.cfg.num_inference_steps,
        )
        frames = frames.cpu().numpy()  # (n, K, H, W, 3) uint8
        t2 = time.perf_counter()

        results = []
        for b, i in enumerate(idx):
            traj, tcp = trajectories[b]
            self.q[i], self.gripper[i], self.tcp[i] = traj.q[-1], traj.gripper[-1], tcp[-1]
            self.image[i] = frames[b, -1]
            self.skeleton[i] = skeleton[b, -1]
            self.elapsed[i] += 1
            step = TaskStep(
                proprio=proprios[b],
                frames=frames[b],
                skeleton_frames=skeleton[b],
                instruction=self.instructions[i],
                elapsed_steps=int(self.elapsed[i]),
                num_joints=self.num_joints,
            )
            reward, terminated, task_info = self.task.step(i, step)
            limit = self.cfg.max_episode_steps
            truncated = limit is not None and bool(self.elapsed[i] >= limit)
            self.ended[i] = bool(terminated) or truncated
            info: dict[str, Any] = {
                "frames": frames[b].copy(),
                "skeleton_frames": skeleton[b].copy(),
                "proprio": proprios[b],
                "ik_pos_err_m": float(traj.ik_pos_err_m.max()),
                "ik_rot_err_deg": float(traj.ik_rot_err_deg.max()),
            }
            info.update(task_info)
            results.append((self.observation(i), float(reward), bool(terminated), truncated, info))
        if self.cfg.info_timings:
            t3 = time.perf_counter()
            timings = {"kinematics": t1 - t0, "world_model": t2 - t1, "total": t3 - t0}
            for result in results:
                result[4]["timings"] = dict(timings)
        return results

    def close(self) -> None:
        """Release the pybullet client of the robot model."""
        self.robot.close()
