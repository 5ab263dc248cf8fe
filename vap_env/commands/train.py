"""Fine-tune the world model: ``vap-env train --config configs/train/<name>.yaml [--resume]``.

The config is a YAML file or the name of a shipped preset (``vap-env train --config tiny-rt1``);
``--output-dir``, ``--data-dir``, ``--model`` and ``--max-steps`` override its fields. The same
command runs on a CPU, one GPU or many GPUs::

    accelerate launch --multi_gpu --num_processes 8 -m vap_env.cli train --config cogvideox-5b-i2v-rt1
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m vap_env.cli train --config tiny-rt1  # CPUs

The first line printed says how many processes train (``accelerate launch --cpu --num_processes 2``
starts one unless MPI or an ``accelerate config`` is set up); each reads its own share of the
episodes (episode i -> process i % N).

The shipped ``tiny`` checkpoint is two stages on synthetic RT-1-schema data::

    vap-env data synth --schema rt1 --episodes 400 --out data/synth-rt1
    vap-env train --config tiny-rt1-vae     # stage 1: the VAE alone -> runs/tiny-rt1-vae/export
    vap-env train --config tiny-rt1         # stage 2: transformer + ControlNet -> runs/tiny-rt1/export

Training writes ``<output_dir>/checkpoints/checkpoint-<step>/`` (atomic, keep-last-k; ``--resume``
continues from the newest complete one), TensorBoard logs in ``<output_dir>/logs`` and, at the end,
the weights directory the env loads with ``weights=<dir>``. ``--resume`` refuses a config that
differs from the run's ``train_config.yaml`` in anything but max_steps, checkpointing, logging,
the export and gradient checkpointing (``vap_env.train.trainer.RESUMABLE_CHANGES``). Ctrl-C stops
with one line naming the newest complete checkpoint (exit status 130).
"""

from __future__ import annotations

import dataclasses
import os
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
        default=False,
        metadata={
            "help": "continue from the newest complete checkpoint (the config may differ from "
            "the run's only in max_steps, checkpointing, logging, name, output_dir, "
            "gradient_checkpointing and the export)"
        },
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
    """Load the config, apply the overrides, train, and print where the weights went.

    Ctrl-C prints one line (the step reached and the newest complete checkpoint) and returns 130.
    """
    from accelerate import PartialState

    from vap_env.train.trainer import Trainer

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
    trainer = None
    try:
        trainer = Trainer(run, resume=cfg.resume)
        result = trainer.train()
    except KeyboardInterrupt:
        if os.environ.get("VAP_ENV_TRACEBACK"):  # where was it stuck?
            raise
        if trainer is not None:
            if trainer.accelerator.is_main_process:
                print(trainer.stop_message())
        elif os.environ.get("RANK", "0") == "0":  # no Accelerator yet: the launcher's rank
            print(f"stopped before the first step; {run.output_dir} is as it was")
        return 130
    if result.export_dir is not None and PartialState().is_main_process:
        print(f"trained {result.steps} steps; weights: {result.export_dir}")
    return 0
