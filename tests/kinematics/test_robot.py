"""RobotModel: FK against the reference figures, IK round trips, gripper-only path, lifecycle, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pybullet as pb
import pytest

from kinematics import (
    IKResult,
    KeypointSpec,
    RobotModel,
    available_robots,
    load_robot,
)
from kinematics.transforms import matrix_to_quat, pose_to_matrix, rotation_angle_deg

# Reference figures (SimplerEnv's Google robot, pybullet FK of the source URDF; see the spec's description).
REF_QPOS = {
    "joint_torso": -0.26395,
    "joint_shoulder": 0.08319,
    "joint_bicep": 0.50176,
    "joint_elbow": 1.15686,
    "joint_forearm": 0.02858,
    "joint_wrist": 1.5926,
    "joint_gripper": -1.08065,
}
REF_POSES = {
    "link_gripper_tcp": ([0.4394, -0.2184, 0.9619], [-0.6039, 0.7802, -0.0325, 0.1601]),
    "link_camera": ([0.146, -0.0004, 1.2134], [-0.6523, 0.6542, -0.2711, 0.2703]),
}


@pytest.fixture(scope="module")
def google():
    robot = load_robot("google_robot")
    yield robot
    robot.close()


@pytest.fixture(scope="module")
def panda():
    robot = load_robot("franka_panda")
    yield robot
    robot.close()


def test_shipped_robots_and_introspection(google, panda):
    assert {"google_robot", "franka_panda"} <= set(available_robots())
    assert google.joint_names == list(REF_QPOS)
    assert google.num_joints == 7 and google.ee_link == "link_gripper_tcp"
    assert set(google.all_joint_names) >= {"joint_finger_left", "joint_head_tilt"}
    assert google.lower.shape == google.upper.shape == (7,)
    assert np.all(google.lower < google.upper)
    assert panda.joint_names == [f"panda_joint{i}" for i in range(1, 8)]
    assert panda.ee_link == "robotiq_tcp"
    assert panda.urdf_path.name == "panda.urdf"


def test_fk_matches_reference(google):
    q = np.array([REF_QPOS[n] for n in google.joint_names])
    poses = google.fk(q)
    for link, (pos, quat) in REF_POSES.items():
        assert np.linalg.norm(poses[link][:3] - pos) < 1e-3, link
        assert rotation_angle_deg(poses[link][3:], quat) < 0.1, link


def test_fk_batched_equals_single_and_ee_pose(google):
    rng = np.random.default_rng(0)
    q = rng.uniform(google.lower, google.upper, size=(5, 7))
    batch = google.fk(q)
    for t in range(5):
        single = google.fk(q[t])
        np.testing.assert_allclose(batch["link_wrist"][t], single["link_wrist"], atol=1e-9)
    np.testing.assert_allclose(google.ee_pose(q), batch["link_gripper_tcp"], atol=1e-9)
    with pytest.raises(KeyError, match="link_wrist"):
        batch["link_wirst"]


def test_default_camera_is_rt1_head_camera(google):
    cam = google.default_camera()
    assert (cam.width, cam.height) == (320, 256)
    np.testing.assert_allclose(cam.K, [[212.5, 0, 160], [0, 212.5, 128], [0, 0, 1]])
    pos, quat = REF_POSES["link_camera"]
    assert np.linalg.norm(cam.world_from_camera[:3, 3] - pos) < 1e-3
    assert rotation_angle_deg(matrix_to_quat(cam.world_from_camera[:3, :3]), quat) < 0.1
    full = google.default_camera(640, 512)
    np.testing.assert_allclose(full.K[0], [425, 0, 320])
    # The TCP at the reference pose is in front of the camera.
    uv, depth = cam.project(google.ee_pose(google.home_q)[:3])
    assert depth > 0 and 0 <= uv[0] < 320 and 0 <= uv[1] < 256


@pytest.mark.parametrize("name", ["google_robot", "franka_panda"])
def test_ik_round_trip(name, google, panda):
    robot = google if name == "google_robot" else panda
    rng = np.random.default_rng(1)
    for _ in range(6):
        # Reachable targets: FK of configurations near home (the workspace the prompts live in).
        q_true = np.clip(robot.home_q + rng.uniform(-0.6, 0.6, 7), robot.lower, robot.upper)
        target = robot.ee_pose(q_true)
        res = robot.ik(target, robot.home_q)
        assert isinstance(res, IKResult)
        assert res.converged
        assert res.pos_err_m < 1e-3 and res.rot_err_deg < 0.5
        assert np.all(res.q >= robot.lower - 1e-9) and np.all(res.q <= robot.upper + 1e-9)
        achieved = robot.ee_pose(res.q)
        assert np.linalg.norm(achieved[:3] - target[:3]) < 1e-3
        assert rotation_angle_deg(achieved[3:], target[3:]) < 0.5


def test_ik_unreachable_reports_residual(google):
    target = google.ee_pose(google.home_q)
    target[:3] = [3.0, 0.0, 1.0]  # 3 m away: beyond the arm's reach
    res = google.ik(target, google.home_q, restarts=1, max_iters=30)
    assert not res.converged
    assert res.pos_err_m > 1.0
    assert np.all(res.q >= google.lower) and np.all(res.q <= google.upper)


def test_keypoints_and_gripper(google):
    kp_open = google.keypoints(google.home_q, 0.0)
    kp_closed = google.keypoints(google.home_q, 1.0)
    assert kp_open.shape == (google.spec.num_keypoints, 3)
    names = google.spec.keypoint_names
    nl, nr = names.index("nail_left"), names.index("nail_right")
    gap_open = np.linalg.norm(kp_open[nl] - kp_open[nr])
    gap_closed = np.linalg.norm(kp_closed[nl] - kp_closed[nr])
    assert gap_open > 0.15 and gap_closed < 0.03  # fingertips nearly meet when closed
    arm = ~google.gripper_mask
    np.testing.assert_allclose(kp_open[arm], kp_closed[arm])  # the gripper value moves only fingers
    traj = google.keypoints(np.tile(google.home_q, (3, 1)), np.array([0.0, 0.5, 1.0]))
    assert traj.shape == (3, google.spec.num_keypoints, 3)
    np.testing.assert_allclose(traj[2], kp_closed)


@pytest.mark.parametrize("name", ["google_robot", "franka_panda"])
def test_gripper_only_path_matches_full_fk(name, google, panda):
    robot = google if name == "google_robot" else panda
    rng = np.random.default_rng(2)
    q = np.clip(robot.home_q + rng.uniform(-0.5, 0.5, (4, 7)), robot.lower, robot.upper)
    g = np.array([0.0, 0.3, 0.7, 1.0])
    full = robot.keypoints(q, g)
    grip = robot.gripper_keypoints(robot.ee_pose(q), g)
    mask = robot.gripper_mask
    assert mask.any() and not mask.all()
    np.testing.assert_allclose(grip[:, mask], full[:, mask], atol=1e-6)
    assert np.isnan(grip[:, ~mask]).all()


def test_panda_virtual_robotiq_fingers_follow_gripper(panda):
    names = panda.spec.keypoint_names
    tl, tr = names.index("tip_left"), names.index("tip_right")
    kp = panda.keypoints(np.tile(panda.home_q, (2, 1)), np.array([0.0, 1.0]))
    gaps = np.linalg.norm(kp[:, tl] - kp[:, tr], axis=-1)
    assert gaps[0] == pytest.approx(0.095, abs=1e-6)  # 85 mm stroke + pad thickness
    assert gaps[1] == pytest.approx(0.014, abs=1e-6)


def test_own_clients_and_no_leak():
    """200 create/close cycles: every model owns a client, and closing releases it for reuse."""
    seen = set()
    for i in range(200):
        # Kinematics-only models keep the loop fast; every 20th loads the full geometry.
        robot = load_robot("google_robot", geometry=i % 20 == 0)
        cid = robot.client_id
        seen.add(cid)
        assert pb.getConnectionInfo(physicsClientId=cid)["isConnected"]
        robot.close()
        assert not pb.getConnectionInfo(physicsClientId=cid)["isConnected"]
    # pybullet hands out the lowest free slot: without leaks the ids stay few.
    assert len(seen) <= 3, sorted(seen)
    a, b = load_robot("google_robot"), load_robot("google_robot")
    assert a.client_id != b.client_id
    cid = b.client_id
    del b  # garbage collection releases the client too
    import gc

    gc.collect()
    assert not pb.getConnectionInfo(physicsClientId=cid)["isConnected"]
    a.close()
    a.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        a.fk(a.home_q)


def test_bad_inputs(google):
    with pytest.raises(ValueError, match=r"J = 7"):
        google.fk(np.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        google.keypoints(np.full(7, np.nan))
    with pytest.raises(ValueError, match="inf"):
        google.ee_pose(np.array([0, 0, 0, np.inf, 0, 0, 0.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        google.keypoints(google.home_q, 2.0)
    with pytest.raises(ValueError, match="frames"):
        google.keypoints(np.tile(google.home_q, (3, 1)), np.zeros(2))
    with pytest.raises(ValueError, match=r"\(7,\)"):
        google.gripper_keypoints(np.zeros(6), 0.0)
    with pytest.raises(ValueError, match="target_pose"):
        google.ik(np.zeros(3), google.home_q)
    with pytest.raises(KeyError, match="Did you mean 'google_robot'"):
        load_robot("googel_robot")


# ---------------------------------------------------------------------- any robot via a spec file
KUKA_SPEC = (Path(__file__).parent / "data" / "kuka_iiwa.yaml").read_text()


def test_third_robot_from_spec_file_only(tmp_path):
    path = tmp_path / "kuka.yaml"
    path.write_text(KUKA_SPEC)
    with load_robot(path) as kuka:
        assert kuka.name == "kuka_iiwa" and kuka.num_joints == 7
        kp = kuka.keypoints(np.tile(kuka.home_q, (2, 1)), np.array([0.0, 1.0]))
        assert kp.shape == (2, 7, 3) and np.all(np.isfinite(kp))
        assert np.linalg.norm(kp[0, 5] - kp[0, 6]) == pytest.approx(0.08)
        target = kuka.ee_pose(kuka.home_q + 0.2)
        assert kuka.ik(target, kuka.home_q).converged
        _, depth = kuka.default_camera().project(kp[0])
        assert np.all(depth > 0)
        grip = kuka.gripper_keypoints(kuka.ee_pose(kuka.home_q), 1.0)
        np.testing.assert_allclose(grip[4:], kp[1, 4:], atol=1e-6)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("link: lbr_iiwa_link_4,", "link: lbr_iiwa_link_44,", "lbr_iiwa_link_44"),
        ("[elbow, wrist, arm]", "[elbow, wirst, arm]", "unknown keypoint 'wirst'"),
        ("palm: [255, 200, 0]", "palm: [255, 200, 300]", r"\[255, 200, 300\]"),
        ("[wrist, flange, arm]", "[wrist, flange, forearm]", "unknown part 'forearm'"),
        ("part: palm}", "part: plam}", "unknown part 'plam'.*Did you mean 'palm'"),
        ("lbr_iiwa_joint_7]", "lbr_iiwa_joint_77]", "lbr_iiwa_joint_77"),
        ("home: [0.0, 0.5,", "home: [0.5,", "home"),
        ("kuka_iiwa/model.urdf", "kuka_iiwa/nope.urdf", "nope.urdf"),
        ("  - [base, shoulder, arm]\n", "  - [base, shoulder]\n", "edge #0"),
        (
            "camera: {xyz_rpy: [1.6, 0.0, 0.9, -2.2, 0.0, 1.5708], ",
            "camera: {",
            r"bad\.yaml': camera needs exactly one of `link` or `xyz_rpy`",
        ),
    ],
)
def test_malformed_spec_names_the_problem(tmp_path, old, new, match):
    assert old in KUKA_SPEC
    path = tmp_path / "bad.yaml"
    path.write_text(KUKA_SPEC.replace(old, new, 1))
    with pytest.raises((ValueError, KeyError, FileNotFoundError), match=match):
        load_robot(path)


def test_spec_round_trips_through_dict(google):
    spec = google.spec
    again = KeypointSpec.from_dict(spec.to_dict(), base_dir=spec.base_dir)
    assert again == spec
    with RobotModel(again) as robot:
        np.testing.assert_allclose(robot.keypoints(robot.home_q), google.keypoints(google.home_q))


def test_set_joint_state_renders_what_fk_computes(google):
    """The pybullet body posed by set_joint_state lies under the projected skeleton keypoints."""
    q = np.clip(
        google.home_q + np.array([0.1, 0.3, 0.0, 0.2, -0.1, -0.4, 0.0]), google.lower, google.upper
    )
    cam = google.default_camera()
    uv, depth = cam.project(google.keypoints(q, 0.5))
    google.set_joint_state(q, 0.5)  # after FK, which moves the shared body
    view, proj = cam.pybullet_view_projection()
    seg = pb.getCameraImage(
        cam.width,
        cam.height,
        view,
        proj,
        renderer=pb.ER_TINY_RENDERER,
        physicsClientId=google.client_id,
    )[4]
    seg = np.asarray(seg).reshape(cam.height, cam.width)
    inside = (depth > 0.05) & np.all((uv >= 2) & (uv < [cam.width - 2, cam.height - 2]), axis=-1)
    assert inside.sum() >= 5
    for u, v in np.rint(uv[inside]).astype(int):
        assert (seg[v - 2 : v + 3, u - 2 : u + 3] == google.body_id).any(), (u, v)
    with pytest.raises(ValueError, match=r"\(J,\)"):
        google.set_joint_state(np.tile(q, (2, 1)))


@pytest.mark.parametrize("name", ["google_robot", "franka_panda"])
def test_ik_jacobian_matches_finite_differences(name, google, panda):
    """The TCP Jacobian (pybullet, TCP point moved into the inertial frame) equals FK differences."""
    robot = google if name == "google_robot" else panda
    q = np.clip(robot.home_q + 0.1, robot.lower, robot.upper)
    full = robot._full_q(q[None], np.zeros(1))[0]
    jac = robot._jacobian(full)[:3]  # linear part (3, J)
    eps = 1e-3  # pybullet FK positions carry float32 rounding (~1e-7 m): keep eps well above it
    num = np.stack(
        [
            (robot.ee_pose(q + eps * e)[:3] - robot.ee_pose(q - eps * e)[:3]) / (2 * eps)
            for e in np.eye(7)
        ],
        axis=1,
    )
    np.testing.assert_allclose(jac, num, atol=2e-3)


def test_register_robot_by_name(tmp_path):
    from kinematics import register_robot
    from kinematics.robot import _REGISTRY

    path = tmp_path / "kuka.yaml"
    path.write_text(KUKA_SPEC)
    register_robot("my_kuka", path)
    try:
        assert "my_kuka" in available_robots()
        with load_robot("my_kuka", geometry=False) as kuka:
            assert kuka.name == "kuka_iiwa"
    finally:
        _REGISTRY.pop("my_kuka")  # keep the process-wide registry as other tests expect it
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        register_robot("nope", tmp_path / "missing.yaml")


def test_bad_robot_files_name_the_file(tmp_path):
    import yaml

    from kinematics import register_robot
    from kinematics.robot import RobotModel
    from kinematics.spec import KeypointSpec

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: x\nparts: {arm: [0, 0, 0]\n")  # unclosed mapping
    with pytest.raises(ValueError, match=r"bad\.yaml' is not valid YAML"):
        register_robot("bad", bad_yaml)
    with pytest.raises(TypeError, match="name must be a non-empty string, got 5"):
        register_robot(5, bad_yaml)
    # `parts` given as a list of pairs instead of a mapping
    spec = yaml.safe_load(KUKA_SPEC)
    spec["parts"] = [[k, v] for k, v in spec["parts"].items()]
    with pytest.raises(ValueError, match="`parts` must map part names to RGB colours"):
        KeypointSpec.from_dict(spec, base_dir=tmp_path)
    # A malformed URDF: pybullet says only "Cannot load URDF file."
    urdf = tmp_path / "broken.urdf"
    urdf.write_text("<robot name='x'><link name='a'>")
    spec = yaml.safe_load(KUKA_SPEC)
    spec["urdf"] = str(urdf)
    with pytest.raises(ValueError, match=r"cannot load the URDF .*broken\.urdf.*well-formed XML"):
        RobotModel(KeypointSpec.from_dict(spec, base_dir=tmp_path), geometry=False)


def test_ik_converged_needs_position_and_orientation():
    robot = load_robot("google_robot", geometry=False)
    try:
        target = robot.ee_pose(robot.home_q)
        target[:3] = [3.0, 0.0, 1.0]  # out of reach, with any orientation accepted
        res = robot.ik(target, robot.home_q, restarts=0, max_iters=30, rot_tol_deg=180.0)
        assert res.pos_err_m > 1.0 and res.rot_err_deg < 180.0
        assert not res.converged
    finally:
        robot.close()


def test_link_to_tcp_is_the_fixed_flange_transform(panda):
    """DROID logs the flange (panda_link8): flange pose @ link_to_tcp is the TCP at any joints."""
    t = panda.link_to_tcp("panda_link8")  # (4, 4)
    np.testing.assert_allclose(t[:3, 3], [0.0, 0.0, 0.15], atol=1e-6)  # Robotiq TCP 0.15 m out
    rng = np.random.default_rng(0)
    for _ in range(3):
        q = rng.uniform(panda.lower, panda.upper)
        flange = pose_to_matrix(panda.fk(q)["panda_link8"])
        np.testing.assert_allclose(flange @ t, pose_to_matrix(panda.ee_pose(q)), atol=1e-6)
    with pytest.raises(ValueError, match="'panda_link3' is not rigidly attached"):
        panda.link_to_tcp("panda_link3")
    with pytest.raises(ValueError, match="Did you mean 'panda_link8'"):
        panda.link_to_tcp("panda_lnk8")
