"""``vap-env skeleton``: demo trajectory and .npz inputs (joints, TCP poses) to mp4."""

from __future__ import annotations

import numpy as np
import pytest

from kinematics import load_robot
from vap_env.cli import main as cli_main
from vap_env.commands.skeleton import Config, main
from vap_env.video import read_video


def test_demo_to_mp4(tmp_path, capsys):
    out = tmp_path / "skel.mp4"
    assert main(Config(robot="google_robot", out=str(out), frames=6, fps=5)) == 0
    video = read_video(out)
    assert video.shape == (6, 256, 320, 3)
    assert video.max() > 100  # something is drawn
    assert "wrote 6 frames 320x256" in capsys.readouterr().out


def test_cli_options_and_panda_size(tmp_path):
    out = tmp_path / "panda.mp4"
    argv = ["skeleton", "--robot", "franka_panda", "--out", str(out), "--frames", "3"]
    assert cli_main([*argv, "--width", "160", "--height", "90"]) == 0
    assert read_video(out).shape == (3, 90, 160, 3)


def test_npz_joints_and_tcp_poses(tmp_path):
    with load_robot("google_robot", geometry=False) as robot:
        q = np.tile(robot.home_q, (4, 1)) + np.linspace(0.0, 0.2, 4)[:, None]
        tcp = robot.ee_pose(q)
    gripper = np.array([0.0, 0.3, 0.6, 1.0])
    np.savez(tmp_path / "q.npz", q=q, gripper=gripper)
    np.savez(tmp_path / "tcp.npz", tcp_pose=tcp, gripper=gripper)
    outs = {}
    for name, extra in [("q", {}), ("tcp", {}), ("tcp_ik", {"arm_ik": True})]:
        src = "q" if name == "q" else "tcp"
        outs[name] = tmp_path / f"{name}.mp4"
        cfg = Config(npz=str(tmp_path / f"{src}.npz"), out=str(outs[name]), frames=0, **extra)
        assert main(cfg) == 0
    videos = {k: read_video(v).astype(int) for k, v in outs.items()}
    assert all(v.shape == (4, 256, 320, 3) for v in videos.values())
    # Gripper-only rendering draws fewer pixels than the full arm; IK from TCP poses recovers the arm.
    lit = {k: int((v.max(-1) > 40).sum()) for k, v in videos.items()}
    assert lit["tcp"] < lit["q"]
    assert abs(lit["tcp_ik"] - lit["q"]) < 0.2 * lit["q"]


def test_bad_npz(tmp_path):
    np.savez(tmp_path / "bad.npz", joints=np.zeros((3, 7)))
    with pytest.raises(ValueError, match="exactly one of 'q'"):
        main(Config(npz=str(tmp_path / "bad.npz"), out=str(tmp_path / "x.mp4")))
    np.savez(tmp_path / "short.npz", q=np.zeros((3, 7)), gripper=np.zeros(2))
    with pytest.raises(ValueError, match="same T"):
        main(Config(npz=str(tmp_path / "short.npz"), out=str(tmp_path / "x.mp4")))
    np.savez(tmp_path / "six.npz", q=np.zeros((3, 6)))
    with pytest.raises(ValueError, match="J = 7"):
        main(Config(npz=str(tmp_path / "six.npz"), out=str(tmp_path / "x.mp4")))
    with pytest.raises(FileNotFoundError, match=r"nope\.npz"):
        main(Config(npz=str(tmp_path / "nope.npz")))
