"""Ground-truth simulator (closed loop through the env's action mode) and the video success detector."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from benchmarks.ground_truth_sim import (
    DetectorConfig,
    GroundTruthSim,
    SuccessDetector,
    goal_region,
    make_scene_start,
)
from benchmarks.ope import PolicyContext, make_ope_policy, rollout_ground_truth
from vap_env.data.synth.scripted import execute
from vap_env.data.synth.writer import scene_for
from vap_env.env import load_env_config

W, H, K = 80, 64, 8
CHUNKS = 2
FRAMES = 1 + CHUNKS * K


@pytest.fixture(scope="module")
def sim() -> GroundTruthSim:
    cfg = load_env_config("rt1")
    return GroundTruthSim(cfg.robot, cfg.action_mode, cfg.action_limits)


def _scripted(start, noise: float = 0.0):
    ctx = PolicyContext(K, FRAMES, "ee_delta", None)
    return make_ope_policy(f"scripted:{noise}", start, ctx, seed=0)


@pytest.mark.parametrize("skill", ["pick", "open_drawer"])
def test_noise_free_scripted_policy_redoes_the_generator_episode(sim, skill):
    start = make_scene_start("google_robot", skill, seed=3, width=W, height=H)
    assert np.array_equal(sim.reset(start.spec)["image"], start.image)
    video = rollout_ground_truth(sim, start, _scripted(start), CHUNKS)
    # The generator's episode, rendered at the dataset's size and shrunk as the clip loader does
    # (the simulator's frames are made that way too, see render_as_dataset).
    cam = start.spec.cameras[0]
    s = np.diag([320 / cam.width, 256 / cam.height, 1.0])
    native = dataclasses.replace(
        cam, K=tuple(map(tuple, s @ np.asarray(cam.K))), width=320, height=256
    )
    reference = execute(
        scene_for("google_robot"), dataclasses.replace(start.spec, cameras=(native,)), FRAMES
    )
    assert video.shape == (FRAMES, H, W, 3)
    # Same skill, same rules: the same outcome and (up to IK round-off) the same frames.
    assert reference.success and sim.state_success()
    shrunk = np.stack(
        [cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in reference.images["image"]]
    )
    diff = np.abs(video.astype(int) - shrunk.astype(int)).max(axis=-1)
    assert (diff > 40).mean() < 0.02


def test_step_before_reset_raises():
    cfg = load_env_config("rt1")
    fresh = GroundTruthSim(cfg.robot, cfg.action_mode, cfg.action_limits)
    with pytest.raises(RuntimeError, match="reset"):
        fresh.step(np.zeros((K, 7)))


@pytest.mark.parametrize("skill", ["pick", "move_near", "open_drawer", "close_drawer"])
def test_detector_tells_success_from_doing_nothing(sim, skill):
    start = make_scene_start("google_robot", skill, seed=11, width=W, height=H)
    goal = goal_region(start)
    assert goal.region.any() and goal.thing_mask.any()
    assert not (goal.region & goal.thing_mask).any() or goal.rule != "inside"
    detector = SuccessDetector()
    done = rollout_ground_truth(sim, start, _scripted(start), CHUNKS)
    assert sim.state_success()
    assert detector(done, goal)[0] is True
    sim.reset(start.spec)
    idle = np.concatenate([start.image[None], sim.step(np.zeros((K, 7)))[0]])
    assert not sim.state_success()
    assert detector(idle, goal)[0] is False


@pytest.mark.parametrize("skill", ["pick", "move_near", "place_into_drawer", "close_drawer"])
def test_a_video_of_noise_is_never_a_success(skill):
    """A world model that paints noise (e.g. untrained weights) must not be credited successes."""
    start = make_scene_start("google_robot", skill, seed=5, width=W, height=H)
    goal = goal_region(start)
    noise = np.random.default_rng(0).integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    ok, score = SuccessDetector()(noise, goal)
    assert ok is False and np.isnan(score)  # "not seen", not a low or high score


def test_detector_checks_resolution_and_thresholds():
    start = make_scene_start("google_robot", "pick", seed=1, width=W, height=H)
    goal = goal_region(start)
    with pytest.raises(ValueError, match="resolution"):
        SuccessDetector()(np.zeros((2, H // 2, W // 2, 3), np.uint8), goal)
    with pytest.raises(ValueError, match="object_fraction"):
        DetectorConfig(object_fraction=1.5)
    with pytest.raises(KeyError, match="unknown skill"):
        make_scene_start("google_robot", "fly", seed=0, width=W, height=H)


def test_simulator_observation_has_the_envs_keys_and_skeleton(sim):
    import gymnasium as gym

    import vap_env  # noqa: F401  (registers the env ids)

    start = make_scene_start("google_robot", "pick", seed=5, width=W, height=H)
    obs = sim.reset(start.spec)
    env = gym.make("VAP-RT1-v0", num_inference_steps=1)
    env_obs, _ = env.reset(seed=0, options=start.reset_options())
    assert set(obs) == set(env_obs)
    # Same joints, gripper and camera: the same skeleton prompt as the env's.
    np.testing.assert_array_equal(obs["skeleton"], env_obs["skeleton"])
    np.testing.assert_allclose(obs["proprio"], env_obs["proprio"], atol=1e-5)
    env.close()


W, H = 80, 64


def test_a_frame_flooded_with_the_object_colour_is_not_a_success():
    start = make_scene_start("google_robot", "pick", seed=11, width=W, height=H)
    goal = goal_region(start)
    frame = goal.first_frame.copy()
    colour = np.median(frame[goal.thing_mask], axis=0).astype(np.uint8)
    frame[goal.window] = colour  # far more "object" pixels than the object has
    assert goal.window.sum() > 4 * goal.thing_mask.sum()
    ok, score = SuccessDetector()(frame[None], goal)
    assert ok is False and np.isnan(score)
