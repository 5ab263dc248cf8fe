"""`vap-env train` as a user meets it: Ctrl-C, clip caches that do not fit, too many processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from vap_env.cli import main as cli_main
from vap_env.config import save_yaml
from vap_env.data.clip_cache import write_clip_cache
from vap_env.train.checkpoint import CheckpointManager
from vap_env.train.config import DataConfig, TrainConfig
from vap_env.train.data import check_data
from vap_env.train.trainer import Trainer

from .conftest import MICRO_SIZE


@pytest.fixture(scope="module")
def rt1_cache(rt1_dataset_dir, tmp_path_factory):
    """The synthetic RT-1 train split (3 episodes) cached at the micro model's size."""
    out = tmp_path_factory.mktemp("rt1_cache") / "train.npz"
    return write_clip_cache(
        rt1_dataset_dir, "train", out, height=MICRO_SIZE, width=MICRO_SIZE, progress=False
    )


def _config(tmp_path, model, data_dir, split: str = "train", **changes) -> TrainConfig:
    """A run of ``model`` on ``data_dir``, also saved as ``tmp_path / "run.yaml"``."""
    cfg = TrainConfig(
        name="cmd",
        model=str(model),
        output_dir=str(tmp_path / "run"),
        data=DataConfig(data_dir=str(data_dir), split=split, shuffle_buffer=4),
        log_with=None,
        **changes,
    )
    save_yaml(cfg, tmp_path / "run.yaml")
    return cfg


def test_ctrl_c_prints_one_line_and_exits_130_then_resumes(
    micro_model_dir, rt1_cache, tmp_path, capsys
):
    _config(tmp_path, micro_model_dir, rt1_cache, max_steps=10_000, checkpoint_every=1)
    argv = ["train", "--config", str(tmp_path / "run.yaml")]
    checkpoints = CheckpointManager(tmp_path / "run" / "checkpoints")
    done = threading.Event()

    def press_ctrl_c() -> None:  # a real SIGINT once the loop has written a checkpoint
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            if checkpoints.complete(verify=False):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    try:
        rc = cli_main(argv)
    finally:
        done.set()
    out, err = capsys.readouterr()
    assert rc == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert re.fullmatch(r"training on 1 process \((cpu|cuda)\)", out.splitlines()[0])
    stopped = re.fullmatch(
        r"stopped at step (\d+); newest complete checkpoint: step (\d+) \(resume with --resume\)",
        out.splitlines()[-1],
    )
    assert stopped, out
    step, saved = map(int, stopped.groups())
    assert 1 <= saved <= step and checkpoints.latest().step == saved

    rc = cli_main([*argv, "--resume", "--max-steps", str(saved + 1)])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"resuming cmd from checkpoint step {saved}" in out.splitlines()
    assert f"trained {saved + 1} steps" in out


def test_a_clip_cache_that_does_not_fit_fails_before_the_model_with_the_fix(
    rt1_dataset_dir, rt1_cache, droid_dataset_dir, micro_model_dir, tmp_path
):
    # tiny is 64x80, the cache 32x32: only rewriting the cache helps, at the model's size, from
    # the dataset the cache records
    cfg = _config(tmp_path, "tiny", rt1_cache)
    with pytest.raises(ValueError) as err:
        Trainer(cfg)
    fix = f"`vap-env data cache --data-dir {rt1_dataset_dir} --split train --height 64 --width 80 "
    assert fix + f"--out {rt1_cache} --overwrite`" in str(err.value)
    assert "only a model of the cache's size" in str(err.value)
    assert not (tmp_path / "run").exists(), "a refused run left files behind"
    # skeleton kind: rewrite with the flag, or set the config line that matches the cache
    gt = DataConfig(data_dir=str(rt1_cache), skeleton_from_ground_truth=True)
    with pytest.raises(ValueError) as err:
        check_data(TrainConfig(model=str(micro_model_dir), data=gt))
    assert "--height 32 --width 32 --skeleton-from-ground-truth --out" in str(err.value)
    assert "or set `data.skeleton_from_ground_truth: false` in the training config" in str(
        err.value
    )
    # DROID: a cache drawn with another K names the K to put in the config
    droid = write_clip_cache(
        droid_dataset_dir,
        "train",
        tmp_path / "droid.npz",
        height=64,
        width=80,
        intrinsics=(140, 140, 158, 92),
        progress=False,
    )
    with pytest.raises(ValueError) as err:
        check_data(TrainConfig(model="tiny", data=DataConfig(data_dir=str(droid))))
    assert "or set `data.intrinsics: [140.0, 140.0, 158.0, 92.0]` in the training config" in str(
        err.value
    )
    assert "--height 64 --width 80 --out " in str(err.value)  # the default K: no --intrinsics
    other_k = DataConfig(data_dir=str(droid), intrinsics=(150, 150, 160, 90))
    with pytest.raises(
        ValueError, match=r"--width 80 --intrinsics 150\.0,150\.0,160\.0,90\.0 --out "
    ):
        check_data(TrainConfig(model="tiny", data=other_k))
    same_k = DataConfig(data_dir=str(droid), intrinsics=(140, 140, 158, 92))
    assert check_data(TrainConfig(model="tiny", data=same_k)) == 3


def _torchrun(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m vap_env.cli train ...`` (gloo DDP)."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    argv += ["-m", "vap_env.cli", "train", "--config", str(tmp_path / "run.yaml"), *args]
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)


def test_more_processes_than_episodes_says_how_episodes_are_sharded(
    rt1_dataset_dir, micro_model_dir, tmp_path
):
    test_split = write_clip_cache(
        rt1_dataset_dir, "test", tmp_path / "test.npz", height=32, width=32, progress=False
    )
    _config(tmp_path, micro_model_dir, test_split, split="test", max_steps=1)
    done = _torchrun(tmp_path)
    assert done.returncode != 0
    assert "training on 2 processes (cpu)" in done.stdout
    assert (
        "has 1 episode(s) for 2 processes: episodes are sharded per process (episode i -> "
        "process i % 2), so process 1 would get none; train on at most 1 process(es), or on "
        "more episodes"
    ) in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_process_whose_share_holds_no_batch_says_how_episodes_are_sharded(
    micro_model_dir, rt1_cache, tmp_path
):
    # 3 episodes of one clip over 2 processes: process 1 gets episode 1 alone, no batch of 2
    _config(tmp_path, micro_model_dir, rt1_cache, batch_size=2, max_steps=1)
    done = _torchrun(tmp_path)
    assert done.returncode != 0
    assert (
        "no full batch of 2 clips for process 1 of 2 in epoch 0: episodes are sharded per "
        "process (episode i -> process i % 2) and this process's share (1 of the split's 3) "
        "holds fewer clips than that; use fewer processes, more episodes or a lower batch_size"
    ) in done.stderr, done.stderr[-2000:]
