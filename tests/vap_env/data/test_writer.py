"""The synthetic writer: resumable, atomic, deterministic; the data synth command."""

from __future__ import annotations

import numpy as np
import pytest

from vap_env.commands.data_synth import Config as SynthCommand
from vap_env.commands.data_synth import main as synth_main
from vap_env.data import iter_episodes
from vap_env.data.synth import writer
from vap_env.data.synth.writer import SynthConfig, generate, hashed_text_embedding, split_plan


def _cfg(out, **kw) -> SynthConfig:
    return SynthConfig(schema="rt1", episodes=3, num_frames=3, out=str(out), progress=False, **kw)


def test_interrupted_run_leaves_no_dataset_and_resumes(tmp_path, monkeypatch) -> None:
    cfg = _cfg(tmp_path / "a")
    work = tmp_path / "a" / writer.WORK_DIR / "fractal20220817_data-0.1.0"
    writer._check_work_dir(work, cfg)
    split, eid = split_plan(cfg)[0]
    writer._work_one(cfg, 0, split, eid, str(work))  # the run "dies" after one episode
    assert not list((tmp_path / "a").rglob("dataset_info.json"))
    assert not list((tmp_path / "a").rglob("features.json"))

    calls = []
    render = writer.render_episode
    monkeypatch.setattr(writer, "render_episode", lambda c, i: calls.append(i) or render(c, i))
    final = generate(cfg)
    assert calls == [1, 2]  # episode 0 was not rendered again
    assert (final / "dataset_info.json").is_file() and not work.exists()

    # A resumed run holds the same episodes as an uninterrupted one. (Images agree up to rare
    # one-level differences of TinyRenderer, which JPEG may spread over a few pixels.)
    fresh = generate(_cfg(tmp_path / "b"))
    for split in ("train", "val", "test"):
        for x, y in zip(iter_episodes(final, split), iter_episodes(fresh, split), strict=True):
            assert x.episode_id == y.episode_id and x.instruction == y.instruction
            np.testing.assert_array_equal(x.tcp_pose, y.tcp_pose)
            np.testing.assert_array_equal(
                x.ground_truth.gripper_masks, y.ground_truth.gripper_masks
            )
            diff = np.abs(x.frames.astype(int) - y.frames.astype(int))
            assert diff.mean() < 0.01 and diff.max() <= 8

    with pytest.raises(FileExistsError, match="--overwrite"):
        generate(cfg)


def test_resume_with_another_config_is_refused(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    work = tmp_path / writer.WORK_DIR / "fractal20220817_data-0.1.0"
    writer._check_work_dir(work, cfg)
    with pytest.raises(ValueError, match=r"differs in \['seed'\]"):
        generate(_cfg(tmp_path, seed=1))


def test_bad_config_names_the_value() -> None:
    with pytest.raises(ValueError, match="episodes = 0"):
        SynthConfig(episodes=0)
    with pytest.raises(ValueError, match="unknown \\['fly'\\]"):
        SynthConfig(skills=("pick", "fly"))
    with pytest.raises(KeyError, match="unknown dataset schema 'rt3'"):
        SynthConfig(schema="rt3")


def test_split_plan_gives_every_split_an_episode() -> None:
    plan = split_plan(SynthConfig(episodes=10))
    assert [s for s, _ in plan].count("val") == 1 and [s for s, _ in plan].count("test") == 1
    assert plan[0] == ("train", "train_000000") and plan[-1] == ("test", "test_000000")


def test_hashed_text_embedding() -> None:
    a, b = hashed_text_embedding("pick blue can"), hashed_text_embedding("pick blue can")
    c = hashed_text_embedding("open top drawer")
    assert a.shape == (512,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-5 and abs(float(a @ c)) < 0.3
    assert float(a @ hashed_text_embedding("pick red can")) > 0.4  # shared words correlate


def test_data_synth_command_droid_with_all_cameras(tmp_path) -> None:
    cfg = SynthCommand(schema="droid", episodes=1, num_frames=3, out=str(tmp_path), progress=False)
    assert synth_main(cfg) == 0
    path = tmp_path / "droid" / "1.0.1"
    assert (path / "droid-train.tfrecord-00000-of-00001").is_file()
    import tensorflow as tf

    from vap_env.data import open_rlds

    ds = open_rlds(path)
    raw = next(iter(ds.records("train")))
    assert tf.train.Example.FromString(raw.data).features.feature  # a real tf.train.Example
    steps = ds.features.deserialize_example_np(raw.data)["steps"]
    obs = steps[1]["observation"]
    for name in ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left"):
        assert obs[name].shape == (180, 320, 3) and obs[name].std() > 5, name  # rendered, not black
    episode = next(iter(iter_episodes(path)))
    assert episode.frames.shape == (3, 180, 320, 3)
