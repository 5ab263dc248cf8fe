"""Fine-tune the world model: ``vap-env train --config configs/train/<name>.yaml [--resume]``.

The config is a YAML file or the name of a shipped preset (``vap-env train --config tiny-rt1``);
``--output-dir``, ``--data-dir``, ``--model`` and ``--max-steps`` override its fields. The same
command runs on a CPU, one GPU or many GPUs::

    accelerate launch --multi_gpu --num_processes 8 -m vap_env.cli train --config cogvideox-5b-i2v-rt1

The shipped ``tiny`` checkpoint is two stages on synthetic RT-1-schema data::

    vap-env data synth --schema rt1 --episodes 400 --out data/synth-rt1
    vap-env train --config tiny-rt1-vae     # stage 1: the VAE alone -> runs/tiny-rt1-vae/export
    vap-env train --config tiny-rt1         # stage 2: transformer + ControlNet -> runs/tiny-rt1/export

Training writes ``<output_dir>/checkpoints/checkpoint-<step>/`` (atomic, keep-last-k; ``--resume``
continues from the newest complete one), TensorBoard logs in ``<output_dir>/logs`` and, at the end,
the weights directory the env loads with ``weights=<dir>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from vap_env.train.config import load_train_config


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env train``."""

    config: str = field(
        metadata={"help": "training config: a YAML path or a preset name from configs/train/"}
    )
    resume: bool = field(
        default=False, metadata={"help": "continue from the newest complete checkpoint"}
    )
    output_dir: str | None = field(default=None, metadata={"help": "override output_dir"})
    data_dir: str | None = field(default=None, metadata={"help": "override data.data_dir"})
    model: str | None = field(
        default=None, metadata={"help": "override model (preset, weights directory or hub id)"}
    )
    max_steps: int | None = field(default=None, metadata={"help": "override max_steps"})
    mixed_precision: Literal["no", "bf16", "fp16"] | None = field(
        default=None, metadata={"help": "override mixed_precision"}
    )


def main(cfg: Config) -> int:
    """Load the config, apply the overrides, train, and print where the weights went."""
    from vap_env.train.trainer import train

    run = load_train_config(cfg.config)
    changes = {
        k: v
        for k, v in {
            "output_dir": cfg.output_dir,
            "model": cfg.model,
            "max_steps": cfg.max_steps,
            "mixed_precision": cfg.mixed_precision,
        }.items()
        if v is not None
    }
    if cfg.data_dir is not None:
        changes["data"] = dataclasses.replace(run.data, data_dir=cfg.data_dir)
    run = dataclasses.replace(run, **changes)
    result = train(run, resume=cfg.resume)
    from accelerate import PartialState

    if result.export_dir is not None and PartialState().is_main_process:
        print(f"trained {result.steps} steps; weights: {result.export_dir}")
    return 0
