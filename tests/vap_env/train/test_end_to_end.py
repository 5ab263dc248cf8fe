"""`vap-env train` on the tiny preset and the session's synthetic RT-1 dataset, end to end."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vap_env.config import save_yaml
from vap_env.models import load_world_model
from vap_env.train.checkpoint import CheckpointManager
from vap_env.train.config import DataConfig, TrainConfig, load_train_config
from vap_env.train.data import clip_loader


def test_two_step_tiny_run_writes_a_checkpoint_the_model_and_env_load(rt1_dataset_dir, tmp_path):
    cfg = TrainConfig(
        name="e2e",
        stage="diffusion",
        model="tiny",
        output_dir=str(tmp_path / "run"),
        data=DataConfig(data_dir="unused", skeleton_from_ground_truth=True),
        max_steps=2,
        mixed_precision="bf16",
        checkpoint_every=1,
        keep_last=1,
        log_every=1,
    )
    path = tmp_path / "e2e.yaml"
    save_yaml(cfg, path)
    # A fresh process, as a user runs it (Accelerate's state is per process; bf16 autocast on CPU)
    argv = [sys.executable, "-m", "vap_env.cli", "train", "--config", str(path)]
    argv += ["--data-dir", str(rt1_dataset_dir)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"trained 2 steps; weights: {tmp_path / 'run' / 'export'}" in done.stdout

    run = tmp_path / "run"
    latest = CheckpointManager(run / "checkpoints").latest()
    assert latest is not None and latest.step == 2
    assert [c.step for c in CheckpointManager(run / "checkpoints").complete()] == [2]
    assert list((run / "logs").rglob("events.out.tfevents.*")), "no TensorBoard log"
    assert load_train_config(run / "train_config.yaml").data.data_dir == str(rt1_dataset_dir)

    wm = load_world_model(str(run / "export"))
    tiny = load_world_model("tiny")
    moved = [
        n
        for n, p in wm.transformer.named_parameters()
        if not torch.equal(p, dict(tiny.transformer.named_parameters())[n])
    ]
    assert moved, "the exported transformer equals the untrained preset"
    # the frozen VAE comes back bit-exact (float32, not rounded through bf16)
    for a, b in zip(wm.vae.parameters(), tiny.vae.parameters(), strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, b)

    import vap_env  # noqa: F401  (registers the ids)

    env = gym.make("VAP-RT1-v0", weights=str(run / "export"), num_inference_steps=1)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert obs["image"].shape == (wm.config.height, wm.config.width, 3)
    env.close()


def test_clip_loader_shards_by_process_and_reshuffles_by_epoch(rt1_dataset_dir):
    model = load_world_model("tiny").config
    cfg = TrainConfig(data=DataConfig(data_dir=str(rt1_dataset_dir)), batch_size=1)

    def ids(epoch, rank=0, world=1):
        loader = clip_loader(cfg, model, epoch, rank=rank, world_size=world)
        return [b["episode_id"][0] for b in loader]

    first = ids(0)
    assert len(first) == 3 and first == ids(0)  # 3 train episodes x 1 window of 9 frames
    epochs = [ids(e) for e in range(1, 6)]
    assert any(e != first for e in epochs) and all(sorted(e) == sorted(first) for e in epochs)
    shards = ids(0, 0, 2) + ids(0, 1, 2)
    assert sorted(shards) == sorted(first)
    batch = next(iter(clip_loader(cfg, model, 0)))
    assert batch["skeleton"].shape == (1, 9, 3, 64, 80) and batch["skeleton"].dtype == torch.uint8
    assert batch["frames"].shape == (1, 8, 3, 64, 80)
    empty = dataclasses.replace(cfg, batch_size=8)
    assert list(clip_loader(empty, model, 0)) == []  # drop_last: too few clips for one batch


@pytest.mark.slow
def test_two_process_ddp_resume_equals_straight_run(rt1_dataset_dir, micro_model_dir, tmp_path):
    """DDP over 2 CPU processes (gloo): per-process data shares, gathered positions, exact resume."""
    cfg = TrainConfig(
        name="ddp",
        model=str(micro_model_dir),
        output_dir=str(tmp_path / "unused"),
        data=DataConfig(data_dir=str(rt1_dataset_dir), shuffle_buffer=4),
        gradient_accumulation_steps=2,
        max_steps=3,
        checkpoint_every=2,
        log_with=None,
    )
    path = tmp_path / "ddp.yaml"
    save_yaml(cfg, path)
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")

    def launch(out: str, *extra: str) -> None:
        argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        argv += ["-m", "vap_env.cli", "train", "--config", str(path), "--output-dir", out, *extra]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-3000:]

    launch(str(tmp_path / "a"))
    launch(str(tmp_path / "b"), "--max-steps", "2")  # constant LR: max_steps changes nothing else
    launch(str(tmp_path / "b"), "--resume")
    latest = CheckpointManager(tmp_path / "b" / "checkpoints").latest()
    assert latest.manifest["num_processes"] == 2
    assert (latest.path / "random_states_1.pkl").is_file()
    a = load_file(str(tmp_path / "a" / "export" / "weights.safetensors"))
    b = load_file(str(tmp_path / "b" / "export" / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_missing_data_fails_before_training_with_the_fix(tmp_path, rt1_dataset_dir):
    from vap_env.train.trainer import Trainer

    cfg = TrainConfig(data=DataConfig(data_dir=str(tmp_path / "nowhere")), log_with=None)
    with pytest.raises(FileNotFoundError, match="vap-env data synth --schema rt1"):
        Trainer(cfg)
    bad_split = DataConfig(data_dir=str(rt1_dataset_dir), split="trian")
    with pytest.raises(KeyError, match="Did you mean 'train'"):
        Trainer(dataclasses.replace(cfg, data=bad_split))
