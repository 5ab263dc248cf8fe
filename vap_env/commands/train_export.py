"""Export one training checkpoint as a world model: ``vap-env train export --checkpoint DIR``.

A run exports its last step by itself (``<output_dir>/export``); this command exports any kept
checkpoint of a ``diffusion``-stage run, e.g. to evaluate it with ``vap-env train eval --weights``
and keep the best. The model is rebuilt from the run's ``train_config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env train export``."""

    checkpoint: str = field(
        metadata={"help": "the checkpoint directory: <output_dir>/checkpoints/checkpoint-<step>"}
    )
    out: str | None = field(
        default=None,
        metadata={"help": "export directory, must not exist; None: <output_dir>/export-<step>"},
    )
    device: str | None = field(
        default=None,
        metadata={
            "help": "torch device to build the model on; None: the kind the run trained on (a "
            "model built from its config, such as tiny, must use that kind)"
        },
    )


def main(cfg: Config) -> int:
    """Export the checkpoint and print where it went."""
    from vap_env.train.trainer import export_checkpoint

    path = export_checkpoint(cfg.checkpoint, cfg.out, device=cfg.device)
    print(f"exported {cfg.checkpoint} to {path} (load it with weights={str(path)!r})")
    return 0
