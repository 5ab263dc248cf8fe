"""Acceptance figures of trained weights: ``vap-env train eval --weights DIR --data-dir DIR``.

Rolls the world model out over held-out synthetic episodes from their first frame and reports
ST-IoU (with the mask source), PSNR and SSIM against the recorded frames, next to the copy-last-frame
and blanked-skeleton baselines (see ``vap_env.train.evaluate``). ``--json PATH`` writes everything,
per episode included, as strict JSON (a value that is not finite, e.g. the infinite PSNR of the
recorded frames against themselves, is null). ``vap-env bench st-iou`` scores the same rollouts per
skill; its default ``--rollout`` is ``env`` where this command's is ``skeleton``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vap_env.train.evaluate import EvalConfig


@dataclass(frozen=True)
class Config(EvalConfig):
    """Options of ``vap-env train eval``."""

    json: str | None = field(default=None, metadata={"help": "write the full report as JSON here"})


def main(cfg: Config) -> int:
    """Evaluate, print the Markdown summary, optionally write the JSON report."""
    import dataclasses

    from vap_env.train.evaluate import evaluate, format_report, write_report

    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    report = evaluate(EvalConfig(**{k: getattr(cfg, k) for k in fields}))
    print(format_report(report))
    if cfg.json:
        write_report(report, cfg.json)
    return 0
