"""Fine-tuning of the world model (``vap-env train``) on Hugging Face Accelerate.

    from vap_env.train import load_train_config, train
    result = train(load_train_config("tiny-rt1"))        # -> TrainResult(steps, losses, export_dir)

Modules: ``config`` (``TrainConfig``, presets in ``configs/train/``), ``trainer`` (the Accelerate
loop, stages ``vae`` / ``diffusion``, exact resume, export), ``losses`` (v-prediction with the
skeleton region up-weighted, the VAE stage's loss), ``lgf`` (the Local Gram Flow structure loss and
its teachers), ``checkpoint`` (atomic, verified, keep-last-k checkpoints), ``data`` (``ClipDataset``
batches per process), ``evaluate`` (acceptance figures on held-out synthetic episodes).
"""

import importlib
from typing import Any

# name -> module, imported on first use: `vap_env.train.checkpoint` alone stays light (the trainer
# pulls in Accelerate and diffusers, the losses torch)
_EXPORTS = {
    "CheckpointManager": "checkpoint",
    "atomic_directory": "checkpoint",
    "DataConfig": "config",
    "OptimConfig": "config",
    "TrainConfig": "config",
    "load_train_config": "config",
    "TEACHERS": "lgf",
    "LGFConfig": "lgf",
    "LGFLoss": "lgf",
    "build_teacher": "lgf",
    "DiffusionLossConfig": "losses",
    "VAELossConfig": "losses",
    "Trainer": "trainer",
    "TrainResult": "trainer",
    "train": "trainer",
    "export_checkpoint": "trainer",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vap_env.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vap_env.train' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
