"""The synthetic scene and scripted skills: outcomes, redo from the stored scene, sample_start."""

from __future__ import annotations

import numpy as np
import pytest

from kinematics import load_robot
from vap_env.data import iter_episodes
from vap_env.data.synth import SceneSpec, execute, sample_start, setup_task
from vap_env.data.synth.scene import sample_scene
from vap_env.data.synth.writer import scene_for


@pytest.mark.parametrize("fixture", ["rt1_dataset_dir", "droid_dataset_dir"])
def test_skills_succeed_unless_the_grasp_was_displaced(fixture, request) -> None:
    """The fixtures use fail_prob=0.1: an outcome is a failure exactly when the grasp was displaced."""
    data_dir = request.getfixturevalue(fixture)
    skills = set()
    for split in ("train", "val", "test"):
        for ep in iter_episodes(data_dir, split):
            gt = ep.ground_truth
            displaced = any(v != 0 for v in gt.scene["task"]["grasp_offset_xy"])
            assert gt.success == (not displaced), (ep.episode_id, ep.instruction)
            assert gt.gripper_masks[0].any() or gt.gripper_masks[-1].any()
            assert gt.object_masks[0].any(), ep.instruction  # the manipulated thing is in view
            skills.add(gt.skill)
    assert skills == {"pick", "move_near", "open_drawer", "close_drawer", "place_into_drawer"}


def test_scene_description_redoes_the_episode(rt1_dataset_dir) -> None:
    ep = next(iter(iter_episodes(rt1_dataset_dir, "val")))
    spec = SceneSpec.from_dict(ep.ground_truth.scene)
    assert spec.to_dict() == ep.ground_truth.scene
    again = execute(scene_for("google_robot"), spec, ep.num_steps)
    np.testing.assert_array_equal(again.q, ep.ground_truth.joint_positions)
    assert again.success == ep.ground_truth.success
    np.testing.assert_array_equal(again.gripper_masks, ep.ground_truth.gripper_masks)


def test_a_missed_grasp_fails_and_leaves_the_object() -> None:
    scene = scene_for("google_robot")
    rng = np.random.default_rng(4)
    spec = setup_task(scene, sample_scene(scene.robot, rng, 160, 128), "pick", rng, fail_prob=1.0)
    ro = execute(scene, spec, 7)
    assert not ro.success and ro.gripper[-1] == 1.0  # closed on nothing
    pos, _ = scene.object_pose(spec.task["target"])
    np.testing.assert_allclose(pos, spec.object(spec.task["target"]).position, atol=1e-9)


def test_sample_start() -> None:
    a = sample_start("google_robot", seed=3, width=80, height=64)
    b = sample_start("google_robot", seed=3, width=80, height=64)
    c = sample_start("google_robot", seed=4, width=80, height=64)
    assert a.image.shape == (64, 80, 3) and a.image.dtype == np.uint8
    np.testing.assert_array_equal(a.image, b.image)
    assert a.instruction == b.instruction and not np.array_equal(a.image, c.image)
    robot = load_robot("google_robot")
    np.testing.assert_allclose(a.camera.K, robot.default_camera(80, 64).K)
    np.testing.assert_allclose(
        a.camera.world_from_camera, robot.default_camera(80, 64).world_from_camera
    )
    np.testing.assert_allclose(a.tcp_pose, robot.ee_pose(a.q.astype(np.float64)), atol=1e-6)
    assert (
        a.q.shape == (7,) and a.gripper == 0.0 and a.scene["task"]["instruction"] == a.instruction
    )
    panda = sample_start("franka_panda", seed=0, width=64, height=36)
    assert panda.image.shape == (36, 64, 3) and panda.q.shape == (7,)
    with pytest.raises(ValueError, match="no synthetic scene for robot 'ur5'"):
        sample_start("ur5", 0, 64, 64)


def test_start_frames_are_made_like_training_frames() -> None:
    """Rendered at the dataset's size, JPEG'd and area-shrunk, as the clip loader makes them.

    A frame rendered directly at the model's size aliases edges: it was 26-28 dB from the training
    pipeline's frame of the same scene, unlike any frame the model was trained on.
    """
    import cv2

    from vap_env.data.synth.writer import scene_for

    start = sample_start("google_robot", seed=5, width=80, height=64)
    scene = scene_for("google_robot")
    scene.reset(SceneSpec.from_dict(start.scene))
    native, _ = scene.render(start.camera.resized(320, 256))
    _, jpeg = cv2.imencode(".jpg", native[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]
    training = cv2.resize(decoded, (80, 64), interpolation=cv2.INTER_AREA)
    direct, _ = scene.render(start.camera)

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
        return float(10 * np.log10(255**2 / mse))

    assert psnr(start.image, training) > 38.0
    assert psnr(direct, training) < 32.0  # what the start frame used to be
