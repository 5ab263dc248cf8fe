"""A user's own robot in the env, from its spec file only (pybullet_data's KUKA iiwa)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from kinematics import load_robot

KUKA = Path(__file__).parents[2] / "kinematics" / "data" / "kuka_iiwa.yaml"


def _start(home: np.ndarray, **extra) -> dict:
    image = np.full((64, 80, 3), 90, np.uint8)
    return {"image": image, "instruction": "pick block", "joints": home, "gripper": 0.0, **extra}


def test_own_robot_runs_from_its_spec_file(make_env):
    with load_robot(KUKA, geometry=False) as kuka:
        home = kuka.home_q.copy()
    env = make_env(robot=str(KUKA), action_mode="joint_pos")
    assert env.action_space.shape == (8, 8)  # 7 joints + gripper
    # No synthetic scene for this robot: the error says how to start it.
    with pytest.raises(
        ValueError, match=r"no synthetic scene for robot '.*kuka_iiwa.yaml'.*'image'"
    ):
        env.reset(seed=0)
    obs, info = env.reset(seed=0, options=_start(home))
    assert info["instruction"] == "pick block" and "scene" not in info
    assert obs["skeleton"].any()  # the spec's camera sees the arm
    target = np.tile(np.append(home + 0.1, 1.0), (8, 1)).astype(np.float32)
    _, _, _, _, info = env.step(target)
    np.testing.assert_allclose(info["proprio"][-1, :7], home + 0.1, atol=1e-5)
    assert not np.array_equal(info["skeleton_frames"][-1], obs["skeleton"])


def test_own_robot_without_a_camera_takes_one_per_reset(make_env, tmp_path):
    spec = re.sub(r"camera: \{[^}]*\}\n", "", KUKA.read_text())
    assert "camera" not in spec
    path = tmp_path / "kuka_nocam.yaml"
    path.write_text(spec)
    with load_robot(KUKA, geometry=False) as kuka:
        home, camera = kuka.home_q.copy(), kuka.default_camera()
    env = make_env(robot=str(path), action_mode="joint_pos")  # builds without a camera
    with pytest.raises(ValueError, match=r"no `camera:` in its spec, so reset options must"):
        env.reset(options=_start(home))
    obs, _ = env.reset(options=_start(home, camera=camera))
    assert obs["skeleton"].any()
