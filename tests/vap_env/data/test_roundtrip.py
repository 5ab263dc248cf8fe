"""Generate -> write -> load: every Episode field equals what the generator rendered."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vap_env.data import iter_episodes, load_episode, open_rlds
from vap_env.data.rotations import apply_ee_delta, pose_to_xyz_rpy
from vap_env.data.synth.writer import SynthConfig, render_episode, split_plan


def _cfg(data_dir) -> SynthConfig:
    recipe = json.loads((data_dir / "vap_synth_recipe.json").read_text())
    return SynthConfig(**{**recipe, "skills": tuple(recipe["skills"])})


def _rollouts(data_dir, ids: tuple[str, ...]) -> dict:
    """Re-render some episodes of the directory's recipe (rendering is deterministic)."""
    cfg = _cfg(data_dir)
    return {eid: render_episode(cfg, i) for i, (_, eid) in enumerate(split_plan(cfg)) if eid in ids}


@pytest.fixture(scope="module")
def rt1_rollouts(rt1_dataset_dir):
    return _rollouts(rt1_dataset_dir, ("train_000000", "test_000000"))


def test_rt1_roundtrip(rt1_dataset_dir, rt1_rollouts) -> None:
    ds = open_rlds(rt1_dataset_dir)
    assert ds.splits == ["train", "val", "test"]
    seen = []
    for split in ds.splits:
        for ep in ds.episodes(split):
            seen.append(ep.episode_id)
            assert ep.skill == ep.ground_truth.skill
            if ep.episode_id not in rt1_rollouts:
                continue
            ro = rt1_rollouts[ep.episode_id]
            assert ep.dataset == "fractal20220817_data" and ep.robot == "google_robot"
            assert ep.fps == 3.0 and ep.action_mode == "ee_delta"
            assert ep.instruction == ro.instruction and ep.skill == ro.skill
            np.testing.assert_allclose(ep.tcp_pose, ro.tcp_pose, atol=1e-6)
            np.testing.assert_array_equal(ep.gripper, ro.gripper)
            assert ep.joint_positions is None
            # JPEG at quality 95: close to the rendered frames, not identical.
            err = np.abs(ep.frames.astype(np.int16) - ro.images["image"].astype(np.int16))
            assert ep.frames.shape == (9, 256, 320, 3) and err.mean() < 2.5
            gt = ep.ground_truth
            assert gt is not None and gt.success == ro.success == ep.success
            np.testing.assert_array_equal(gt.gripper_masks, ro.gripper_masks)
            np.testing.assert_array_equal(gt.object_masks, ro.object_masks)
            np.testing.assert_array_equal(gt.joint_positions, ro.q)
            assert gt.scene["task"]["instruction"] == ro.instruction
            assert ep.camera.width == 320 and ep.camera.height == 256
    assert seen == [eid for _, eid in split_plan(_cfg(rt1_dataset_dir))]
    assert ds.num_skipped == 0


def test_rt1_actions_replay_the_logged_tcp_path(rt1_dataset_dir) -> None:
    for ep in iter_episodes(rt1_dataset_dir, split="train"):
        pose = ep.tcp_pose[0].astype(np.float64)
        g = float(ep.gripper[0])
        for t in range(ep.num_steps - 1):
            pose = apply_ee_delta(pose, ep.actions[t, :6])
            g += float(ep.actions[t, 6])
            np.testing.assert_allclose(pose[:3], ep.tcp_pose[t + 1, :3], atol=1e-5)
            assert abs(abs(pose[3:] @ ep.tcp_pose[t + 1, 3:]) - 1.0) < 1e-5
            assert g == pytest.approx(float(ep.gripper[t + 1]), abs=1e-5)
        np.testing.assert_array_equal(ep.actions[-1], 0.0)


def test_rt1_stored_action_features_follow_the_convention(rt1_dataset_dir) -> None:
    """Raw world_vector/rotation_delta equal the standardised actions; the raw gripper action is the
    relative command, the standardised one the measured change (fingers stall on objects)."""
    ds = open_rlds(rt1_dataset_dir)
    raw = next(iter(ds.records("train")))
    decoded = ds.features.deserialize_example_np(raw.data)["steps"]
    steps = [decoded[i] for i in range(len(decoded))]
    stored = np.stack(
        [
            np.concatenate(
                [
                    s["action"]["world_vector"],
                    s["action"]["rotation_delta"],
                    s["action"]["gripper_closedness_action"],
                ]
            )
            for s in steps
        ]
    )
    episode = ds.decode(raw)
    np.testing.assert_allclose(stored[:, :6], episode.actions[:, :6], atol=1e-6)
    commanded = np.array([s["observation"]["gripper_closedness_commanded"][0] for s in steps])
    measured = np.array([s["observation"]["gripper_closed"][0] for s in steps])
    np.testing.assert_allclose(stored[:-1, 6], np.diff(commanded), atol=1e-6)
    np.testing.assert_allclose(episode.actions[:-1, 6], np.diff(measured), atol=1e-6)
    assert [bool(s["is_first"]) for s in steps] == [True] + [False] * (len(steps) - 1)
    assert steps[-1]["action"]["terminate_episode"].tolist() == [1, 0, 0]


def test_droid_roundtrip(droid_dataset_dir) -> None:
    rollouts = _rollouts(droid_dataset_dir, ("train_000002", "val_000000"))
    episodes = [
        ep for split in ("train", "val", "test") for ep in iter_episodes(droid_dataset_dir, split)
    ]
    assert len(episodes) == 5
    for ep in episodes:
        if ep.episode_id not in rollouts:
            continue
        ro = rollouts[ep.episode_id]
        assert ep.dataset == "droid" and ep.robot == "franka_panda" and ep.fps == 15.0
        assert ep.instruction == ro.instruction and ep.skill == ro.skill
        assert ep.success == ro.success  # from "/success/" in the file path
        np.testing.assert_allclose(ep.joint_positions, ro.q, atol=1e-6)
        np.testing.assert_allclose(ep.gripper, ro.gripper, atol=1e-6)
        # TCP comes back through DROID's xyz + Euler representation.
        np.testing.assert_allclose(ep.tcp_pose[:, :3], ro.tcp_pose[:, :3], atol=1e-5)
        dots = np.abs(np.sum(ep.tcp_pose[:, 3:] * ro.tcp_pose[:, 3:], axis=1))
        np.testing.assert_allclose(dots, 1.0, atol=1e-5)
        # joint_pos actions are the next step's joints and gripper; the last step holds.
        np.testing.assert_allclose(ep.actions[:-1, :7], ro.q[1:], atol=1e-6)
        np.testing.assert_allclose(ep.actions[:-1, 7], ro.gripper[1:], atol=1e-6)
        np.testing.assert_allclose(ep.actions[-1, :7], ro.q[-1], atol=1e-6)
        # The camera is rebuilt from the stored extrinsics: it projects like the rendering camera.
        cam = ro.cameras["exterior_image_1_left"]
        pts = ro.tcp_pose[:, :3].astype(np.float64)
        np.testing.assert_allclose(ep.camera.project(pts)[0], cam.project(pts)[0], atol=1e-4)
        err = np.abs(
            ep.frames.astype(np.int16) - ro.images["exterior_image_1_left"].astype(np.int16)
        )
        assert err.mean() < 2.5
        np.testing.assert_allclose(
            pose_to_xyz_rpy(ep.tcp_pose)[:, :3], ro.tcp_pose[:, :3], atol=1e-5
        )
    # DROID logs no intrinsics: a user's own K reaches the episode's camera.
    k = np.array([[200.0, 0.0, 150.0], [0.0, 190.0, 95.0], [0.0, 0.0, 1.0]])
    ep = next(iter_episodes(droid_dataset_dir, "val", intrinsics=k))
    np.testing.assert_allclose(ep.camera.K, k)
    np.testing.assert_allclose(
        load_episode(droid_dataset_dir, ep.episode_id, intrinsics=k).camera.K, k
    )


def test_load_episode_by_id_and_directory_detection(rt1_dataset_dir) -> None:
    a = load_episode(rt1_dataset_dir, "val_000000")
    b = load_episode(rt1_dataset_dir.parent.parent, "val_000000")  # the root above the dataset dir
    c = load_episode(rt1_dataset_dir.parent, "val_000000")  # the dataset dir above the version
    assert a.episode_id == b.episode_id == c.episode_id == "val_000000"
    np.testing.assert_array_equal(a.frames, c.frames)
    with pytest.raises(KeyError, match="has 1 episodes"):
        load_episode(rt1_dataset_dir, "val_000003")
    with pytest.raises(KeyError, match=r"no split 'vall'.*Did you mean 'val'"):
        load_episode(rt1_dataset_dir, "vall_000000")
    with pytest.raises(FileNotFoundError, match="not an RLDS dataset directory"):
        open_rlds(rt1_dataset_dir / "ground_truth")


def test_intrinsics_four_numbers_equal_the_matrix_and_bad_ones_are_named(droid_dataset_dir) -> None:
    from vap_env.data.intrinsics import DROID_DEFAULT_K, as_intrinsics

    k = as_intrinsics((200.0, 190.0, 150.0, 95.0))
    np.testing.assert_array_equal(k, [[200.0, 0.0, 150.0], [0.0, 190.0, 95.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(as_intrinsics(k), k)
    assert as_intrinsics(None) is None and as_intrinsics(()) is None
    ep = next(iter_episodes(droid_dataset_dir, "val", intrinsics=(200.0, 190.0, 150.0, 95.0)))
    np.testing.assert_array_equal(ep.camera.K, k)
    np.testing.assert_array_equal(
        next(iter_episodes(droid_dataset_dir, "val")).camera.K, DROID_DEFAULT_K
    )
    for bad in (
        (200.0, 190.0, 150.0),
        (0.0, 190.0, 150.0, 95.0),
        (np.nan, 1, 2, 3),
        ("a", 1, 2, 3),
        [[200.0, 1.0, 150.0], [0.0, 190.0, 95.0], [0.0, 0.0, 1.0]],  # skew: not drawable
        [[200.0, 0.0, 150.0], [0.0, 190.0, 95.0], [0.0, 0.0, 2.0]],
    ):
        with pytest.raises(ValueError, match=r"intrinsics = .* fx, fy, cx, cy"):
            as_intrinsics(bad)
    with pytest.raises(ValueError, match="intrinsics = "):
        open_rlds(droid_dataset_dir, intrinsics=(1.0, 2.0))


def test_reading_a_dataset_keeps_tensorflow_info_lines_quiet(rt1_dataset_dir) -> None:
    import os
    import subprocess
    import sys

    quiet = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")  # conftest sets the level
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    code = f"from vap_env.data import iter_episodes; next(iter_episodes({str(rt1_dataset_dir)!r}))"
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    # TensorFlow's C++ INFO lines, and its oneDNN notice (which ignores the level)
    for line in ("cpu_feature_guard", "tf_record_dataset_op", "oneDNN custom operations"):
        assert line not in run.stderr, run.stderr


def test_droid_stored_fields_follow_droid(droid_dataset_dir) -> None:
    """cartesian_position is the flange (panda_link8) pose, as Polymetis logs it; ``action`` is the
    commanded cartesian_position + gripper_position (DROID's RLDS conversion); the velocities are
    DROID's normalised commands, change / per-step maximum, clipped to [-1, 1]."""
    from kinematics import load_robot
    from vap_env.data.synth.writer import (
        DROID_MAX_CARTESIAN_DELTA,
        DROID_MAX_GRIPPER_DELTA,
        DROID_MAX_JOINT_DELTA,
    )

    ds = open_rlds(droid_dataset_dir)
    raw = next(iter(ds.records("train")))
    decoded = ds.features.deserialize_example_np(raw.data)["steps"]
    steps = [decoded[i] for i in range(len(decoded))]

    def stack(group: str, key: str) -> np.ndarray:
        return np.stack([s[group][key] for s in steps]).astype(np.float64)

    q = stack("observation", "joint_position")
    g = stack("observation", "gripper_position")
    cart = stack("observation", "cartesian_position")
    robot = load_robot("franka_panda", geometry=False)
    flange = pose_to_xyz_rpy(robot.fk(q)["panda_link8"])
    np.testing.assert_allclose(cart[:, :3], flange[:, :3], atol=1e-5)
    np.testing.assert_allclose(np.cos(cart[:, 3:] - flange[:, 3:]), 1.0, atol=1e-8)
    # ... and the loader moves it out to the TCP.
    np.testing.assert_allclose(ds.decode(raw).tcp_pose[:, :3], robot.ee_pose(q)[:, :3], atol=1e-5)

    commanded = np.concatenate(
        [stack("action_dict", "cartesian_position"), stack("action_dict", "gripper_position")], 1
    )
    np.testing.assert_allclose(np.stack([s["action"] for s in steps]), commanded)
    np.testing.assert_allclose(commanded[:-1, :6], cart[1:])

    nxt = np.r_[1 : len(q), len(q) - 1]
    np.testing.assert_allclose(
        stack("action_dict", "joint_velocity"),
        np.clip((q[nxt] - q) / DROID_MAX_JOINT_DELTA, -1, 1),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        stack("action_dict", "gripper_velocity"),
        np.clip((g[nxt] - g) / DROID_MAX_GRIPPER_DELTA, -1, 1),
        atol=1e-6,
    )
    lin = stack("action_dict", "cartesian_velocity")[:, :3]
    np.testing.assert_allclose(
        lin,
        np.clip((cart[nxt, :3] - cart[:, :3]) / DROID_MAX_CARTESIAN_DELTA[:3], -1, 1),
        atol=1e-6,
    )
    for key in ("cartesian_velocity", "joint_velocity", "gripper_velocity"):
        assert np.abs(stack("action_dict", key)).max() <= 1.0
    assert np.abs(stack("action_dict", "joint_velocity")).max() > 0.0  # the arm moves
