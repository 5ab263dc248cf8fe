"""VAPEnv: the Gymnasium contract, seeding, spaces, bad input, reset options, tasks, PPO."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ClosedEnvironmentError, ResetNeeded
from gymnasium.utils.env_checker import check_env, data_equivalence

from kinematics import load_robot
from vap_env.actions import ActionLimits
from vap_env.env import EnvConfig, VAPEnv, resolve_env_args
from vap_env.tasks import ReachTask, Task


def _without_timings(info: dict) -> dict:
    return {k: v for k, v in info.items() if k != "timings"}


def _rollout(env: gym.Env, seed: int, actions: list[np.ndarray]) -> list:
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, truncated, _without_timings(info)))
    return out


@pytest.mark.parametrize("env_id", ["VAP-RT1-v0", "VAP-DROID-v0"])
def test_gymnasium_check_env(make_env, env_id):
    # as users make it: check_env compares the infos of two seeded steps exactly, so the default
    # info has no wall-clock timings
    env = make_env(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    messages = [str(w.message) for w in caught]
    # The only warnings allowed: RT-1's action bounds are its own, not the normalised [-1, 1], and
    # the random-init weights notice of presets without a trained checkpoint (DROID).
    allowed = ("normalized", "symmetric", "random (seeded) weights")
    assert all(any(a in m for a in allowed) for m in messages), messages


def test_stable_baselines3_check_env(make_env):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    # RT-1's (K, 7) ee_delta space and (H, W, 3) images; DROID differs only in sizes and bounds.
    sb3_check_env(make_env().unwrapped, warn=True)


def test_same_seed_same_rollout_different_seed_differs(make_env, small_actions):
    env = make_env()
    rng = np.random.default_rng(0)
    actions = [small_actions(env.action_space, rng) for _ in range(2)]
    first = _rollout(env, 3, actions)  # two chunks: the second is conditioned on generated frames
    again = _rollout(env, 3, actions)
    assert data_equivalence(first, again, exact=True)
    other_instance = _rollout(make_env(), 3, actions[:1])
    assert data_equivalence(first[:2], other_instance, exact=True)
    different = _rollout(env, 4, actions[:1])
    assert not np.array_equal(first[0][0]["image"], different[0][0]["image"])  # another scene
    assert not np.array_equal(first[1][0]["image"], different[1][0]["image"])


def test_spaces_observation_layout_and_step_info(rt1_env, small_actions):
    env = rt1_env
    assert env.action_space.shape == (8, 7) and env.action_space.dtype == np.float32
    spaces = env.observation_space.spaces
    assert spaces["image"].shape == (64, 80, 3) and spaces["image"].dtype == np.uint8
    assert spaces["skeleton"].shape == (64, 80, 3)
    assert spaces["proprio"].shape == (7 + 8,) and spaces["proprio"].dtype == np.float32
    assert env.metadata["render_fps"] == 3.0 / 8  # render() gives one frame per 8-frame step

    obs, info = env.reset(seed=1)
    assert isinstance(info["instruction"], str) and info["instruction"]
    assert obs in env.observation_space
    robot = load_robot("google_robot")
    try:
        q = obs["proprio"][:7].astype(np.float64)
        np.testing.assert_allclose(obs["proprio"][7:14], robot.ee_pose(q), atol=1e-5)
    finally:
        robot.close()
    assert obs["skeleton"].max() > 0, "the start skeleton should show the robot"

    action = small_actions(env.action_space, np.random.default_rng(0))
    obs, reward, terminated, truncated, info = env.step(action)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["frames"].shape == (8, 64, 80, 3) and info["frames"].dtype == np.uint8
    assert info["skeleton_frames"].shape == (8, 64, 80, 3)
    assert info["proprio"].shape == (8, 15) and info["proprio"].dtype == np.float32
    assert "timings" not in info  # wall-clock seconds are opt-in (info_timings=True)
    assert info["ik_pos_err_m"] < 1e-3
    np.testing.assert_array_equal(obs["image"], info["frames"][-1])
    np.testing.assert_array_equal(obs["skeleton"], info["skeleton_frames"][-1])
    np.testing.assert_array_equal(obs["proprio"], info["proprio"][-1])
    np.testing.assert_array_equal(env.render(), obs["image"])


def test_render_side_by_side_and_droid_preset(make_env):
    env = make_env("VAP-DROID-v0", render_mode="rgb_array", render_skeleton=True)
    obs, _ = env.reset(seed=0)
    assert env.metadata["render_fps"] == 15.0 / 8
    assert env.action_space.shape == (8, 8)  # joint_pos: 7 joints + gripper
    frame = env.render()
    assert frame.shape == (64, 160, 3)
    np.testing.assert_array_equal(frame[:, 80:], obs["skeleton"])
    hold = np.tile(np.append(obs["proprio"][:7], obs["proprio"][-1]), (8, 1))
    obs2, *_ = env.step(hold)
    np.testing.assert_allclose(obs2["proprio"], obs["proprio"], atol=1e-6)


def test_every_action_mode_steps(make_env):
    for mode in ("joint_pos", "joint_delta", "ee_delta", "ee_pos"):
        env = make_env(action_mode=mode)
        obs, _ = env.reset(seed=0)
        # The zero-motion action of each mode: hold joints / TCP pose, zero deltas.
        p = obs["proprio"].astype(np.float64)
        if mode == "joint_pos":
            row = np.append(p[:7], p[-1])
        elif mode == "ee_pos":
            from kinematics.transforms import quat_to_matrix
            from vap_env.actions import matrix_to_rotvec

            row = np.concatenate([p[7:10], matrix_to_rotvec(quat_to_matrix(p[10:14])), p[-1:]])
        else:
            row = np.zeros(env.action_space.shape[1])
        obs2, *_ = env.step(np.tile(row, (8, 1)).astype(np.float32))
        np.testing.assert_allclose(obs2["proprio"][7:10], p[7:10], atol=1e-3, err_msg=mode)


def test_step_before_reset_is_gymnasium_error(make_env):
    with pytest.raises(ResetNeeded):
        make_env().step(np.zeros((8, 7), np.float32))
    env = VAPEnv(preset="rt1", num_inference_steps=1, render_mode="rgb_array")  # unwrapped
    try:
        with pytest.raises(ResetNeeded, match=r"before calling env.reset"):
            env.step(np.zeros((8, 7), np.float32))
        with pytest.raises(ResetNeeded, match=r"render\(\) before calling env.reset"):
            env.render()  # it returned a black frame
    finally:
        env.close()
    with pytest.raises(ClosedEnvironmentError, match=r"env.reset\(\) after env.close\(\)"):
        env.reset(seed=0)


def test_gripper_only_prompt_draws_no_arm(make_env):
    # Real RT-1 logs no joints, so a model trained on it only ever saw the gripper drawn. (The
    # DROID camera sees the whole arm; RT-1's head camera barely sees it at the home pose.)
    full = make_env("VAP-DROID-v0").reset(seed=0)[0]["skeleton"]
    env = make_env("VAP-DROID-v0", skeleton="gripper")
    obs, _ = env.reset(seed=0)
    drawn_full, drawn_gripper = full.any(axis=-1), obs["skeleton"].any(axis=-1)
    assert 0 < 2 * drawn_gripper.sum() < drawn_full.sum()
    assert not (drawn_gripper & ~drawn_full).any()  # nothing the full prompt lacks
    hold = np.tile(np.append(obs["proprio"][:7], 0.0), (8, 1)).astype(np.float32)
    _, _, _, _, info = env.step(hold)
    assert 0 < info["skeleton_frames"].any(axis=-1).sum(axis=(1, 2)).min()
    with pytest.raises(ValueError, match=r"skeleton='arm'; use one of \['full', 'gripper'\]"):
        EnvConfig(skeleton="arm")


def test_a_failed_first_reset_leaves_the_env_usable(make_env):
    # Gymnasium's passive checker broke every later step after a first reset that raised.
    env = make_env()
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"imgae": 0})
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros((8, 7), np.float32))
    assert info["frames"].shape == (8, 64, 80, 3)


def test_truncation_and_step_after_end(make_env):
    zeros = np.zeros((8, 7), np.float32)
    # Registered ids: Gymnasium's TimeLimit with the id's episode length (RT-1: 10 chunks).
    assert make_env().spec.max_episode_steps == 10
    limited = make_env(max_episode_steps=1)
    limited.reset(seed=0)
    assert limited.step(zeros)[3] is True
    # Built directly, the env truncates by itself and refuses to step past the end.
    env = VAPEnv(preset="rt1", max_episode_steps=2, num_inference_steps=1)
    try:
        env.reset(seed=0)
        assert env.step(zeros)[3] is False
        assert env.step(zeros)[3] is True
        with pytest.raises(ResetNeeded, match=r"ended"):
            env.step(zeros)
        env.reset()
        assert env.step(zeros)[3] is False
    finally:
        env.close()


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.zeros((8, 8), np.float32), r"shape \(8, 7\).*got \(8, 8\)"),
        (np.zeros((7,), np.float32), r"shape \(8, 7\).*got \(7,\)"),
        (np.full((8, 7), np.nan, np.float32), "NaN/inf"),
        (np.full((8, 7), -np.inf, np.float32), "NaN/inf"),
        (np.full((8, 7), 1.5, np.float32), "outside the action space.*clip_actions=True"),
    ],
)
def test_bad_actions_raise(rt1_env, action, match):
    rt1_env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        rt1_env.step(action)


def test_clip_actions(make_env):
    clipped_env = make_env(clip_actions=True, action_mode="joint_delta")
    plain_env = make_env(action_mode="joint_delta")
    big = np.full((8, 8), 3.0, np.float32)
    clipped_env.reset(seed=0)
    plain_env.reset(seed=0)
    obs_a, *_ = clipped_env.step(big)
    obs_b, *_ = plain_env.step(
        np.clip(big, plain_env.action_space.low, plain_env.action_space.high)
    )
    assert data_equivalence(obs_a, obs_b, exact=True)


@pytest.fixture(scope="module")
def start_state():
    robot = load_robot("google_robot")
    q = robot.home_q.copy()
    state = {"q": q, "tcp": robot.ee_pose(q)}
    robot.close()
    return state


def test_reset_from_explicit_state(rt1_env, start_state):
    image = np.random.default_rng(0).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    options = {
        "image": image,
        "instruction": "pick coke can",
        "joints": start_state["q"],
        "gripper": 0.25,
    }
    obs, info = rt1_env.reset(seed=0, options=options)
    assert info["instruction"] == "pick coke can"
    np.testing.assert_allclose(obs["proprio"][:7], start_state["q"], atol=1e-6)
    assert obs["proprio"][-1] == pytest.approx(0.25)
    assert obs["image"].shape == (64, 80, 3)
    # The image was resized, not cropped: its mean brightness survives.
    assert abs(float(obs["image"].mean()) - float(image.mean())) < 2.0

    by_pose = {**options, "tcp_pose": start_state["tcp"]}
    del by_pose["joints"]
    obs, _ = rt1_env.reset(options=by_pose)
    np.testing.assert_allclose(obs["proprio"][7:10], start_state["tcp"][:3], atol=1e-3)


def _explicit_start(start_state) -> dict:
    image = np.random.default_rng(1).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    return {
        "image": image,
        "instruction": "open drawer",
        "joints": start_state["q"],
        "gripper": 0.5,
    }


def test_the_seed_alone_drives_generation_from_an_explicit_start(
    rt1_env, start_state, small_actions
):
    # An explicit start fixes the scene, so the frames differ by seed only through the slot's
    # torch generator, which the reset seeds.
    action = small_actions(rt1_env.action_space, np.random.default_rng(0))

    def frames(seed: int) -> np.ndarray:
        rt1_env.reset(seed=seed, options=_explicit_start(start_state))
        return rt1_env.step(action)[4]["frames"]

    three = frames(3)
    assert np.array_equal(three, frames(3))
    assert not np.array_equal(three, frames(4))


def test_step_prompts_the_world_model_with_the_context_skeleton_then_the_new_ones(
    rt1_env, start_state, small_actions
):
    # The step's generation rebuilt by hand: context image, [context skeleton, K new skeletons],
    # instruction, and the slot's generator as it stood before the step.
    options = _explicit_start(start_state)
    obs, _ = rt1_env.reset(seed=0, options=options)
    core = rt1_env.unwrapped.core
    generator = torch.Generator()
    generator.set_state(core.generators[0].get_state())
    action = small_actions(rt1_env.action_space, np.random.default_rng(1), scale=0.2)
    info = rt1_env.step(action)[4]
    prompt = np.concatenate([obs["skeleton"][None], info["skeleton_frames"]])  # (K+1, H, W, 3)
    # the arm moved, so the context skeleton differs from the first new one
    assert not np.array_equal(prompt[0], prompt[1])
    frames = core.world_model.generate_chunk(
        obs["image"][None],
        prompt[None],
        [options["instruction"]],
        generator=[generator],
        num_inference_steps=1,
    )
    np.testing.assert_array_equal(frames[0].cpu().numpy(), info["frames"])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"imag": 0}, "unknown reset option.*Did you mean 'image'"),
        ({"instruction": None}, "missing \\['instruction'\\]"),
        ({"tcp_pose": np.array([0.5, 0, 1, 0, 0, 0, 1.0])}, "both 'joints' and 'tcp_pose'"),
        ({"joints": np.zeros(6)}, r"shape \(7,\)"),
        ({"joints": np.full(7, 10.0)}, "outside its limits"),
        ({"image": np.zeros((64, 80, 3), np.float32)}, "uint8"),
        ({"image": np.zeros((64, 80), np.uint8)}, "uint8 array \\(H, W, 3\\)"),
        ({"gripper": 1.5}, r"in \[0, 1\]"),
        ({"gripper": "0.5"}, r"reset option 'gripper' must be numbers, got '0\.5'"),
        ({"joints": "abc"}, r"reset option 'joints' must be numbers, got 'abc'"),
        ({"instruction": ""}, "non-empty"),
        ({"episode": "ep"}, "do not also pass"),
    ],
)
def test_bad_reset_options_raise(rt1_env, start_state, change, match):
    options = {
        "image": np.zeros((64, 80, 3), np.uint8),
        "instruction": "open top drawer",
        "joints": start_state["q"],
        "gripper": 0.0,
    }
    options.update(change)
    options = {k: v for k, v in options.items() if v is not None}
    with pytest.raises(ValueError, match=match):
        rt1_env.reset(options=options)


def test_unreachable_tcp_pose_and_bad_episode_raise(rt1_env):
    with pytest.raises(ValueError, match=r"not reachable"):
        rt1_env.reset(
            options={
                "image": np.zeros((64, 80, 3), np.uint8),
                "instruction": "pick coke can",
                "tcp_pose": np.array([3.0, 3.0, 3.0, 0, 0, 0, 1.0]),
                "gripper": 0.0,
            }
        )
    with pytest.raises(ValueError, match=r"must be a vap_env.data.Episode"):
        rt1_env.reset(options={"episode": {"frames": []}})
    with pytest.raises(ResetNeeded):  # a failed reset leaves the env needing one
        rt1_env.step(np.zeros((8, 7), np.float32))


def test_reset_from_episode_replays_logged_tcp_trajectory(make_env, rt1_dataset_dir):
    """The synthetic RT-1 writer logs actions in the env's ee_delta convention: replay reproduces them."""
    from vap_env.data import iter_episodes

    episode = next(iter(iter_episodes(rt1_dataset_dir, split="train")))
    k = 8
    steps = (len(episode.frames) - 1) // k
    assert steps >= 1
    env = make_env(max_episode_steps=steps)
    obs, info = env.reset(seed=0, options={"episode": episode})
    assert info["instruction"] == episode.instruction
    np.testing.assert_allclose(
        obs["proprio"][:7], episode.ground_truth.joint_positions[0], atol=1e-5
    )
    np.testing.assert_allclose(obs["proprio"][7:10], episode.tcp_pose[0, :3], atol=1e-3)
    for s in range(steps):
        obs, _, _, truncated, info = env.step(episode.actions[s * k : (s + 1) * k])
        logged = episode.tcp_pose[s * k + 1 : (s + 1) * k + 1]
        np.testing.assert_allclose(info["proprio"][:, 7:10], logged[:, :3], atol=2e-3)
        np.testing.assert_allclose(
            info["proprio"][:, -1], episode.gripper[s * k + 1 : (s + 1) * k + 1], atol=1e-5
        )
    assert truncated


def test_tasks_are_pluggable(make_env):
    env = make_env(task="reach", action_mode="joint_delta", max_episode_steps=3)
    obs, info = env.reset(seed=0)
    np.testing.assert_allclose(
        info["goal"], obs["proprio"][7:10] + np.array([0.0, 0.0, 0.1]), atol=1e-6
    )
    _, reward, terminated, _, info = env.step(np.zeros((8, 8), np.float32))
    assert reward == pytest.approx(-0.1, abs=1e-5) and not terminated
    assert info["distance"] == pytest.approx(0.1, abs=1e-5)

    class Always(Task):
        def step(self, slot, step):
            return 1.0, step.elapsed_steps >= 2, {"frames_seen": len(step.frames)}

    env = make_env(task=Always())
    env.reset(seed=0)
    assert env.step(np.zeros((8, 7), np.float32))[1:3] == (1.0, False)
    _, reward, terminated, _, info = env.step(np.zeros((8, 7), np.float32))
    assert (reward, terminated, info["frames_seen"]) == (1.0, True, 8)
    with pytest.raises(ValueError, match=r"unknown task 'rech'.*Did you mean 'reach'"):
        make_env(task="rech")
    with pytest.raises(ValueError, match=r"tolerance_m"):
        ReachTask(tolerance_m=0)
    with pytest.raises(ValueError, match=r"tolerance_m"):
        ReachTask(tolerance_m=float("nan"))


def test_one_task_object_can_serve_several_envs(make_env):
    # Each single env is slot 0: a shared ReachTask used to let the last reset set every goal.
    task = ReachTask()
    a = make_env(task=task, action_mode="joint_delta")
    b = make_env(task=task, action_mode="joint_delta")
    assert a.unwrapped.task is not b.unwrapped.task
    obs_a, _ = a.reset(seed=0)
    q = obs_a["proprio"][:7].astype(np.float64)
    q[0] += 0.5
    b.reset(
        options={
            "image": obs_a["image"],
            "instruction": "reach",
            "joints": q,
            "gripper": 0.0,
        }
    )
    _, reward, _, _, info = a.step(np.zeros((8, 8), np.float32))
    assert reward == pytest.approx(-0.1, abs=1e-5) and info["is_success"] is False


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"unknown action_mode 'ee_delt'.*Did you mean 'ee_delta'"):
        EnvConfig(action_mode="ee_delt")
    with pytest.raises(TypeError, match=r"unknown env argument.*Did you mean 'action_mode'"):
        VAPEnv(preset="rt1", action_mod="ee_delta")
    with pytest.raises(ValueError, match=r"unknown env preset 'rt2'.*Did you mean 'rt1'"):
        VAPEnv(preset="rt2")
    with pytest.raises(ValueError, match=r"render_mode='human'"):
        VAPEnv(preset="rt1", render_mode="human")
    # Checked before the world model loads: wrong types, NaN, impossible bounds, no such device.
    for kwargs, match in (
        ({"clip_actions": "no"}, r"EnvConfig\.clip_actions: expected true or false, got 'no'"),
        ({"weights": 123}, r"EnvConfig\.weights: expected a string"),
        ({"action_mode": None}, r"EnvConfig\.action_mode: expected str, got null"),
        ({"max_episode_steps": 2.5}, r"max_episode_steps: expected an integer, got 2\.5"),
        ({"render_fps": float("nan")}, r"render_fps: is NaN"),
        ({"start_ik_tolerance_m": -1.0}, r"start_ik_tolerance_m must be a finite distance > 0"),
        ({"action_limits": {"max_translation": -1.0}}, r"action_limits\.max_translation=-1\.0"),
        (
            {"action_limits": {"workspace_low": (0.0, 0.0, 3.0)}},
            r"workspace_low=\(0\.0, 0\.0, 3\.0\) must be below workspace_high",
        ),
        ({"device": "gpu"}, r"device='gpu' is not a torch device"),
    ):
        with pytest.raises((TypeError, ValueError), match=match):
            VAPEnv(preset="rt1", **kwargs)
    if not torch.cuda.is_available():
        EnvConfig(device="cuda")  # a config for a GPU machine may be written here
        with pytest.raises(ValueError, match=r"device='cuda', but .*use device='cpu'"):
            VAPEnv(preset="rt1", device="cuda")
    assert EnvConfig(action_limits=ActionLimits(max_rotation=np.inf))  # unbounded is allowed
    # A dict config is read like a YAML preset.
    cfg, _ = resolve_env_args(None, {"action_mode": "joint_pos"}, None, {}, None, [])
    assert cfg == EnvConfig(action_mode="joint_pos")


def test_weights_from_a_saved_directory_and_bad_weights(make_env, tmp_path, small_actions):
    """weights= takes a preset name or a directory written by save_pretrained (same model, same frames)."""
    from vap_env.models import load_world_model

    load_world_model("tiny").save_pretrained(tmp_path / "wm")
    action = small_actions(gym.spaces.Box(-1, 1, (8, 7)), np.random.default_rng(0))
    frames = []
    for weights in ("tiny", str(tmp_path / "wm")):
        env = make_env(weights=weights)
        env.reset(seed=0)
        frames.append(env.step(action)[4]["frames"])
    np.testing.assert_array_equal(frames[0], frames[1])
    with pytest.raises(KeyError, match=r"unknown world model 'tinyy'.*Did you mean 'tiny'"):
        make_env(weights="tinyy")


def test_reset_from_droid_episode_replays_joint_targets(make_env, droid_dataset_dir):
    """DROID episodes start from their logged joints and camera; joint_pos actions are next-step targets."""
    from vap_env.data import iter_episodes

    episode = next(iter(iter_episodes(droid_dataset_dir, split="train")))
    env = make_env("VAP-DROID-v0")
    obs, info = env.reset(seed=0, options={"episode": episode})
    assert info["instruction"] == episode.instruction
    np.testing.assert_allclose(obs["proprio"][:7], episode.joint_positions[0], atol=1e-5)
    assert obs["proprio"][-1] == pytest.approx(float(episode.gripper[0]), abs=1e-6)
    _, _, _, _, info = env.step(episode.actions[:8])
    np.testing.assert_allclose(info["proprio"][:, :7], episode.joint_positions[1:9], atol=1e-5)
    np.testing.assert_allclose(info["proprio"][:, -1], episode.gripper[1:9], atol=1e-5)


def test_random_init_weights_warn_and_packaged_names_resolve(tmp_path):
    from vap_env.core import resolve_weights

    with pytest.warns(UserWarning, match="random \\(seeded\\) weights"):
        assert resolve_weights("tiny") == "tiny"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a directory or hub id is passed through silently
        assert resolve_weights(str(tmp_path)) == str(tmp_path)


def test_reset_info_scene_drives_the_scripted_policy(make_env, droid_dataset_dir):
    """A built-in (or synthetic-episode) start reports its scene, so the scripted skill can run."""
    from policies import make_policy
    from vap_env.data import iter_episodes
    from vap_env.data.synth import SceneSpec

    env = make_env("VAP-DROID-v0")
    obs, info = env.reset(seed=0)
    assert isinstance(info["scene"], SceneSpec)
    assert info["scene"].task["instruction"] == info["instruction"]
    policy = make_policy("scripted", scene=info["scene"], chunk_size=env.action_space.shape[0])
    policy.reset(info["instruction"])
    _, _, _, _, step_info = env.step(policy.act(obs))  # joint_pos by default on the Franka
    # Closed-loop joint targets are reached: the plan's TCP at the chunk's end.
    reached = step_info["proprio"][-1, 7:10]
    np.testing.assert_allclose(reached, policy.tcp_plan[8, :3], atol=5e-3)
    episode = next(iter(iter_episodes(droid_dataset_dir, split="train")))
    _, info = env.reset(options={"episode": episode})
    assert info["scene"] == SceneSpec.from_dict(episode.ground_truth.scene)
    with pytest.raises(ValueError, match=r"pass info\['scene'\] from env\.reset\(\)"):
        make_policy("scripted", scene=None, chunk_size=8)
    with pytest.raises(TypeError, match=r"missing required setting\(s\): chunk_size \(K, the env"):
        make_policy("scripted", scene=info["scene"])


def test_intrinsics_set_the_default_camera_of_explicit_starts(make_env, start_state):
    import dataclasses

    robot = load_robot("google_robot")
    native = robot.default_camera(640, 512)
    robot.close()
    tuned = (425.0, 413.1, 305.0, 233.0)  # SimplerEnv's hand-tuned K for real RT-1, at 640x512
    options = _explicit_start(start_state)
    nominal = make_env().reset(seed=0, options=options)[0]["skeleton"]
    same = make_env(intrinsics=(425.0, 425.0, 320.0, 256.0)).reset(seed=0, options=options)
    np.testing.assert_array_equal(same[0]["skeleton"], nominal)  # the spec's own K: no change
    obs = make_env(intrinsics=tuned).reset(seed=0, options=options)[0]
    assert not np.array_equal(obs["skeleton"], nominal)
    k = np.array([[425.0, 0, 305.0], [0, 413.1, 233.0], [0, 0, 1]])
    by_hand = make_env().reset(
        seed=0, options={**options, "camera": dataclasses.replace(native, K=k)}
    )[0]
    np.testing.assert_array_equal(obs["skeleton"], by_hand["skeleton"])
    with pytest.raises(ValueError, match=r"intrinsics = \(425\.0, 413\.1\) is not a camera"):
        make_env(intrinsics=(425.0, 413.1))


class _EndsAtOnce(Task):
    def step(self, slot, step):
        return 0.0, True, {}


def test_step_after_termination_needs_a_reset():
    env = VAPEnv(preset="rt1", task=_EndsAtOnce(), num_inference_steps=1)
    try:
        env.reset(seed=0)
        zeros = np.zeros((8, 7), np.float32)
        assert env.step(zeros)[2] is True
        with pytest.raises(ResetNeeded, match="ended"):
            env.step(zeros)
    finally:
        env.close()


def test_reach_reward_is_the_distance_after_the_last_action(make_env):
    env = make_env(task="reach", action_mode="joint_delta")
    obs, info = env.reset(seed=0)
    chunk = np.zeros((8, 8), np.float32)
    chunk[-1, 1] = 0.2  # only the chunk's last action moves the arm
    obs, reward, _, _, step_info = env.step(chunk)
    distance = float(np.linalg.norm(obs["proprio"][7:10] - info["goal"]))
    assert abs(distance - 0.1) > 1e-2  # the move changed the distance
    assert reward == pytest.approx(-distance, abs=1e-5)
    assert step_info["distance"] == pytest.approx(distance, abs=1e-5)
