"""Shared test setup: never touch the network, keep TensorFlow quiet and on the CPU."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One intra-op thread: on a shared 2-core machine two spinning OpenMP threads per process made the
# tiny model 10-50x slower; one thread never did. Set before torch is imported (subprocesses inherit).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TFDS_DATA_DIR", os.path.join(os.path.dirname(__file__), ".no-tfds-data"))


# ---------------------------------------------------------------------------------------------
# Tiny synthetic RLDS datasets, generated once per test session (vap_env.data.synth.writer).
# Each holds 5 episodes of 9 frames (train 3 / val 1 / test 1; skills pick, move_near,
# open_drawer | close_drawer | place_into_drawer) plus ground_truth/. The fixtures return the
# version directory (.../fractal20220817_data/0.1.0, .../droid/1.0.1). Treat them as read-only.
# ---------------------------------------------------------------------------------------------
SYNTH_FIXTURE = {
    "episodes": 5,
    "num_frames": 9,
    "val_fraction": 0.2,
    "test_fraction": 0.2,
    "seed": 7,
}


@pytest.fixture(scope="session")
def rt1_dataset_dir(tmp_path_factory):
    """A synthetic RT-1 (fractal20220817_data 0.1.0) directory, 320x256 frames."""
    from vap_env.data.synth.writer import SynthConfig, generate

    out = tmp_path_factory.mktemp("rt1_synth")
    return generate(SynthConfig(schema="rt1", out=str(out), progress=False, **SYNTH_FIXTURE))


@pytest.fixture(scope="session")
def droid_dataset_dir(tmp_path_factory):
    """A synthetic DROID (droid 1.0.1) directory, 180x320 frames; exterior camera 1 only is rendered."""
    from vap_env.data.synth.writer import SynthConfig, generate

    out = tmp_path_factory.mktemp("droid_synth")
    cfg = SynthConfig(
        schema="droid", out=str(out), progress=False, extra_cameras=False, **SYNTH_FIXTURE
    )
    return generate(cfg)
