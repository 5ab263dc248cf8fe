"""Held-out diffusion loss of trained weights: ``vap-env train loss --weights DIR --data-dir DIR``.

The training objective on a fixed draw of clips, noise and timesteps (``--seed``), so the numbers
of two models, or of a training and a test split, compare directly (see
``vap_env.train.evaluate.diffusion_loss``). Prints one line; ``--json PATH`` writes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from vap_env.strict_json import write_json


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env train loss``."""

    weights: str = field(
        metadata={"help": "world model: preset, shipped checkpoint name or weights directory"}
    )
    data_dir: str = field(metadata={"help": "RLDS dataset directory or clip cache (.npz)"})
    split: str = field(default="test", metadata={"help": "dataset split"})
    train_config: str = field(
        default="tiny-rt1-gpu",
        metadata={
            "help": "training preset or YAML whose loss settings and clip windows to use: the one "
            "the weights were trained with (its data settings must match a clip cache)"
        },
    )
    batches: int = field(default=12, metadata={"help": "number of batches to average"})
    batch_size: int = field(default=16, metadata={"help": "clips per batch"})
    seed: int = field(default=123, metadata={"help": "seed of the clip order, noise, timesteps"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
    json: str | None = field(default=None, metadata={"help": "write the result as JSON here"})


def main(cfg: Config) -> int:
    """Compute and print the loss."""
    from vap_env.train.evaluate import diffusion_loss

    options = {k: v for k, v in asdict(cfg).items() if k != "json"}
    result = diffusion_loss(**options)
    short = (
        f"; the split holds clips for only {result['batches']} of the {cfg.batches} batches asked"
        if result["batches"] < cfg.batches
        else ""
    )
    print(
        f"diffusion loss {result['loss']:.4f} ({result['batches']} batches, {result['clips']} "
        f"clips of split {result['split']!r}, seed {cfg.seed}{short})"
    )
    if cfg.json:
        write_json(cfg.json, {**result, "seed": cfg.seed})
    return 0
