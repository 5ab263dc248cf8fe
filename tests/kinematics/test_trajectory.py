"""The built-in demo trajectory: shape, limits, smoothness, and that the TCP follows its waypoints."""

from __future__ import annotations

import numpy as np
import pytest

from kinematics import load_robot
from kinematics.trajectory import _WAYPOINTS, demo_trajectory


@pytest.mark.parametrize("name", ["google_robot", "franka_panda"])
def test_demo_trajectory(name):
    with load_robot(name, geometry=False) as robot:
        q, gripper = demo_trajectory(robot, 26)
        assert q.shape == (26, 7) and gripper.shape == (26,)
        assert np.all(q >= robot.lower) and np.all(q <= robot.upper)
        assert gripper.min() == 0.0 and gripper.max() == 1.0
        assert np.abs(np.diff(q, axis=0)).max() < 0.3  # smooth: no IK branch flips
        home = robot.ee_pose(robot.home_q)
        tcp = robot.ee_pose(q)
        np.testing.assert_allclose(tcp[0, :3], home[:3], atol=1e-3)
        np.testing.assert_allclose(tcp[-1, :3] - home[:3], _WAYPOINTS[-1][0], atol=1e-3)
        q2, g2 = demo_trajectory(robot, 26)
        np.testing.assert_array_equal(gripper, g2)
        np.testing.assert_array_equal(q, q2)  # deterministic
    with pytest.raises(ValueError, match="at least 2"):
        demo_trajectory(robot, 1)
