"""``scripted``: redo a synthetic episode's skill, with seeded action noise (a policy of known quality).

The plan is the synthetic scene's own skill trajectory (``vap_env.data.synth.scripted``: the
waypoints and smoothstep/slerp interpolation that rendered the dataset), computed from the
episode's scene description (``info["scene"]`` of ``env.reset()``, ``Episode.ground_truth.scene``
or ``StartState.scene``), so a noise-free scripted policy repeats the recorded episode. The plan
gives a TCP pose and a gripper command for each of ``num_frames`` frames; the policy turns them
into actions of the env's mode:

| action_mode | action t (D = 7 for the ee modes, J + 1 for joint_pos)                        |
|---|---|
| ``ee_delta`` | planned TCP at t+1 minus the current TCP (translation, axis-angle rotation), gripper command increment |
| ``ee_pos`` | planned TCP at t+1 (position, rotation vector), gripper command |
| ``joint_pos`` | IK of the planned TCP at t+1 (warm-started), gripper command |

Closed loop at chunk boundaries: the first action of a chunk starts from the TCP (and joints)
reported in ``observation["proprio"]`` ([joints (J), tcp_pose (7), gripper]), so deviations of the
previous chunk are corrected; within a chunk the env gives no observation, so the policy assumes
each planned pose was reached. The gripper follows the planned command open-loop (the observed
closedness stops at an object's width, and a command that rises is what grasps).

Noise: Gaussian, std ``noise_std`` on the pose channels (metres for translations, radians for
rotations; for ``joint_pos`` radians on the joints), none on the gripper (a spurious close would
grasp where the plan does not). Drawn from a generator seeded by ``seed`` / ``reset(seed=...)``.
Noise levels give policies of graded success for offline policy evaluation. After the plan's
last frame the policy holds the final pose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from kinematics.transforms import matrix_to_pose, quat_to_matrix
from policies.base import as_chunk
from vap_env.actions import matrix_to_rotvec

if TYPE_CHECKING:
    from kinematics import RobotModel
    from vap_env.data.synth.scene import SceneSpec


@dataclasses.dataclass(frozen=True)
class ScriptedPolicyConfig:
    """Timing, action mode and noise of a scripted skill."""

    chunk_size: int = dataclasses.field(metadata={"help": "K, the env's chunk_frames"})
    num_frames: int = dataclasses.field(
        default=33,
        metadata={"help": "frames the skill is spread over (the dataset's episode length T)"},
    )
    action_mode: Literal["ee_delta", "ee_pos", "joint_pos"] | None = dataclasses.field(
        default=None,
        metadata={
            "help": "the env's action mode (None: that of the shipped env preset for the scene's "
            "robot: ee_delta for the Google robot, joint_pos for the Franka)"
        },
    )
    noise_std: float = dataclasses.field(
        default=0.0, metadata={"help": "std of Gaussian noise on the pose channels (m / rad)"}
    )
    seed: int | None = dataclasses.field(
        default=None, metadata={"help": "noise seed used until reset() is given another one"}
    )

    def __post_init__(self) -> None:
        if self.chunk_size < 1 or self.num_frames < 2:
            raise ValueError(
                f"need chunk_size >= 1 and num_frames >= 2, got {self.chunk_size}, {self.num_frames}"
            )
        if self.action_mode is not None and self.action_mode not in _MODES:
            raise ValueError(
                f"action_mode must be one of {sorted(_MODES)}, got {self.action_mode!r}"
            )
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")


@dataclasses.dataclass(frozen=True)
class SkillPlan:
    """Per-frame targets of a scripted skill; frame 0 is the start pose."""

    tcp: np.ndarray  # (T, 7) [x, y, z, qx, qy, qz, qw], base frame
    gripper: np.ndarray  # (T,) gripper commands, 0 open .. 1 closed
    q0: np.ndarray  # (J,) start joints
    instruction: str
    robot: RobotModel


def plan_skill(scene_spec: SceneSpec | Mapping[str, Any], num_frames: int) -> SkillPlan:
    """The scripted skill of a scene description (``SceneSpec`` or its dict, task filled in)."""
    from vap_env.data.synth import scripted as skills  # pybullet scene: import on use
    from vap_env.data.synth.scene import SceneSpec
    from vap_env.data.synth.writer import scene_for

    if not isinstance(scene_spec, SceneSpec | Mapping):
        raise ValueError(
            f"scene must be a synthetic scene description (SceneSpec or its dict), got "
            f"{type(scene_spec).__name__}: pass info['scene'] from env.reset() (built-in scene or "
            "synthetic episode), Episode.ground_truth.scene or StartState.scene"
        )
    spec = (
        scene_spec if isinstance(scene_spec, SceneSpec) else SceneSpec.from_dict(dict(scene_spec))
    )
    if not spec.task:
        raise ValueError(
            "the scene description has no task; pass Episode.ground_truth.scene or "
            "StartState.scene of a synthetic episode (setup_task fills it in)"
        )
    scene = scene_for(spec.robot)
    scene.reset(spec)  # the waypoints read drawer handles etc. from the built scene
    targets, grip = skills.tcp_targets(scene, spec, num_frames)  # (T, 4, 4), (T,)
    tcp = matrix_to_pose(targets)  # (T, 7)
    q0 = np.asarray(spec.start_q or scene.robot.home_q, dtype=np.float64)
    return SkillPlan(tcp, grip, q0, spec.task["instruction"], scene.robot)


def default_action_mode(robot: str) -> str:
    """The action mode of the shipped env preset (``configs/env/``) that drives ``robot``.

    Raises ``ValueError`` when no preset drives it (pass ``action_mode`` then).
    """
    from vap_env.config import load_preset, preset_names
    from vap_env.env import EnvConfig

    modes = {}
    for name in preset_names("env"):
        env = load_preset("env", name, EnvConfig)
        modes.setdefault(env.robot, env.action_mode)
    if robot not in modes:
        raise ValueError(
            f"no shipped env preset drives robot {robot!r} (presets drive {sorted(modes)}): pass "
            f"action_mode, one of {sorted(_MODES)}, the mode of your env"
        )
    return modes[robot]


class ScriptedPolicy:
    """Replans from the observed TCP at every chunk along the scene's scripted skill (see module)."""

    config_class: ClassVar[type] = ScriptedPolicyConfig

    def __init__(self, scene: SceneSpec | Mapping[str, Any], cfg: ScriptedPolicyConfig) -> None:
        plan = plan_skill(scene, cfg.num_frames)
        if cfg.action_mode is None:
            cfg = dataclasses.replace(cfg, action_mode=default_action_mode(plan.robot.name))
        self.cfg = cfg
        self.tcp_plan = plan.tcp  # (T, 7)
        self.gripper_plan = plan.gripper  # (T,)
        self.instruction = plan.instruction
        self._robot = plan.robot
        self._q0 = plan.q0
        self._rng = np.random.default_rng(cfg.seed)
        self._t = 0
        self._q = self._q0.copy()

    def reset(self, instruction: str, seed: int | None = None) -> None:
        """Back to frame 0. A non-empty instruction must be the scene's own (a different one means
        the policy was built for another episode)."""
        if instruction and instruction != self.instruction:
            raise ValueError(
                f"scripted policy built for {self.instruction!r} was reset with {instruction!r}; "
                "build it from the same episode's scene"
            )
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        self._q = self._q0.copy()

    def _target(self, t: int) -> tuple[np.ndarray, float]:
        t = min(t, len(self.tcp_plan) - 1)  # past the plan: hold the last pose
        return self.tcp_plan[t], float(self.gripper_plan[t])

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """The next (K, D) float32 chunk; ``observation["proprio"]`` closes the loop if present."""
        tcp, gripper = self._target(self._t)
        proprio = observation.get("proprio") if isinstance(observation, Mapping) else None
        if proprio is not None:
            proprio = np.asarray(proprio, dtype=np.float64).reshape(-1)
            if len(proprio) < 8:
                raise ValueError(
                    f"proprio must be [joints, tcp_pose (7), gripper], got {proprio.shape}"
                )
            tcp = proprio[-8:-1]
            if len(proprio) > 8:
                self._q = proprio[:-8]
        chunk = []
        for _ in range(self.cfg.chunk_size):
            target, g_next = self._target(self._t + 1)
            chunk.append(_MODES[self.cfg.action_mode](self, tcp, target, gripper, g_next))
            tcp, gripper = target, g_next
            self._t += 1
        return as_chunk(np.stack(chunk), where="scripted policy")

    def _noise(self, n: int) -> np.ndarray:
        return (
            self._rng.normal(0.0, self.cfg.noise_std, n) if self.cfg.noise_std > 0 else np.zeros(n)
        )

    def _ee_delta(self, tcp: np.ndarray, target: np.ndarray, g: float, g_next: float) -> np.ndarray:
        rot = quat_to_matrix(target[3:]) @ quat_to_matrix(tcp[3:]).T
        pose = np.concatenate([target[:3] - tcp[:3], matrix_to_rotvec(rot)]) + self._noise(6)
        return np.concatenate([pose, [g_next - g]])

    def _ee_pos(self, tcp: np.ndarray, target: np.ndarray, g: float, g_next: float) -> np.ndarray:
        pose = np.concatenate([target[:3], matrix_to_rotvec(quat_to_matrix(target[3:]))])
        return np.concatenate([pose + self._noise(6), [g_next]])

    def _joint_pos(
        self, tcp: np.ndarray, target: np.ndarray, g: float, g_next: float
    ) -> np.ndarray:
        self._q = self._robot.ik(target, self._q, restarts=0).q
        return np.concatenate([self._q + self._noise(len(self._q)), [g_next]])


_MODES = {
    "ee_delta": ScriptedPolicy._ee_delta,
    "ee_pos": ScriptedPolicy._ee_pos,
    "joint_pos": ScriptedPolicy._joint_pos,
}
