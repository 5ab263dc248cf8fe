"""Per-skill action-following fidelity: ``vap-env bench st-iou --data-dir DIR [--weights W]``.

For each held-out episode of a synthetic dataset (``vap-env data synth``; the ``sim`` mask source
needs its ground truth), start from the episode's first frame and state and replay its actions,
then compare the generated video with the recorded one (frame 0 is given, frames 1.. are scored).
The rollout is the acceptance evaluation's (``vap_env.train.evaluate``): by default the product
path ``rollout="env"``, i.e. ``gym.make(env_id)``, ``reset(options={"episode": ep})`` and the
recorded actions chunk by chunk; ``rollout="skeleton"`` feeds the skeleton video of the logged
states straight to the model. Baselines and ceilings, as there (one ``evaluate_episode`` serves
both): ``copy_last`` (the first frame repeated), ``blank_skeleton`` (the same model with an
all-black prompt), ``vae_reconstruction`` (the recording through the model's VAE) and ``recorded``
(the recording itself: the metric's ceiling).

Per skill (``Episode.skill``) and over all episodes: n, mean ST-IoU with a 95% bootstrap interval
(mask source in the header), PSNR and SSIM, for the model, the baselines and the ceilings; and,
in the JSON, ST-IoU and PSNR chunk by chunk (``by_chunk``: how errors compound in the rollout).
Outputs in ``--out-dir``: ``st_iou.json`` (every episode), ``st_iou.md`` (the table),
``st_iou.png`` (bars per skill with the intervals) and ``videos/<episode>.mp4`` grids ``recorded | skeleton |
generated`` for the first ``--videos`` episodes (the skeleton is the prompt the model saw).

Several processes split the episodes between them (``PartialState.split_between_processes``);
the main process gathers the rows and writes the outputs. On N GPUs:
``accelerate launch --num_processes N -m vap_env.cli bench st-iou ...``; on a CPU machine:
``ACCELERATE_USE_CPU=true torchrun --nproc_per_node N -m vap_env.cli bench st-iou ...``. Each episode's noise seed is ``episode_seed(seed, its index in the split)``,
so the numbers do not depend on the number of processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.masks import (
    MASK_SOURCE_HELP,
    SAM2_CHECKPOINT_HELP,
    SAM2_CONFIG_HELP,
    mask_source_config,
)
from vap_env.strict_json import dumps
from vap_env.train.evaluate import (
    NULL_NOTE,
    REPLAY_MAX_STEPS,
    ROLLOUT_HELP,
    VARIANTS,
    by_chunk_summary,
    check_rollout,
    episode_seed,
    evaluate_episode,
    report_footer,
)

__all__ = [
    "METRICS",
    "VARIANTS",
    "Config",
    "evaluate_episode",
    "format_table",
    "main",
    "per_skill_figure",
    "plot_per_skill",
    "run",
    "torch_threads",
    "upscale",
]

METRICS: tuple[str, ...] = ("st_iou", "psnr", "ssim")


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env bench st-iou``."""

    data_dir: str = field(
        metadata={"help": "synthetic RLDS dataset directory (vap-env data synth)"}
    )
    weights: str | None = field(
        default=None, metadata={"help": "world model (None: what gym.make(env_id) loads)"}
    )
    split: str = field(default="test", metadata={"help": "held-out split"})
    max_episodes: int = field(default=0, metadata={"help": "at most N episodes (0: all)"})
    rollout: str = field(
        default="env",
        metadata={"help": ROLLOUT_HELP},
    )
    env_id: str | None = field(
        default=None, metadata={"help": "env of the rollout (None: the dataset's, e.g. VAP-RT1-v0)"}
    )
    mask_source: str = field(default="sim", metadata={"help": MASK_SOURCE_HELP})
    sam2_checkpoint: str | None = field(default=None, metadata={"help": SAM2_CHECKPOINT_HELP})
    sam2_config: str | None = field(default=None, metadata={"help": SAM2_CONFIG_HELP})
    num_inference_steps: int | None = field(
        default=None, metadata={"help": "denoising steps per chunk (None: the model's default)"}
    )
    seed: int = field(
        default=0,
        metadata={"help": "noise seed of the run: episode i uses seed * 100003 + i (0: seed i)"},
    )
    videos: int = field(default=3, metadata={"help": "mp4 grids of the first N episodes"})
    out_dir: str = field(default="runs/st_iou", metadata={"help": "output directory"})
    json: str | None = field(default=None, metadata={"help": "also write the JSON report here"})
    device: str = field(
        default="auto", metadata={"help": "torch device; auto: this process's accelerator or cpu"}
    )
    threads: int = field(
        default=0, metadata={"help": "torch intra-op threads on the CPU; 0 = torch's default"}
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        check_rollout(self.rollout)
        if self.max_episodes < 0 or self.videos < 0:
            raise ValueError(
                f"max_episodes={self.max_episodes} and videos={self.videos} must be >= 0"
            )
        mask_source_config(
            self.mask_source, sam2_checkpoint=self.sam2_checkpoint, sam2_config=self.sam2_config
        )


def upscale(video: np.ndarray, min_height: int = 256) -> np.ndarray:
    """(T, H, W, 3) -> (T, s*H, s*W, 3), the smallest integer s (nearest) with s*H >= min_height:
    model-resolution frames (64x80 for ``tiny``) are too small to watch."""
    scale = max(1, -(-min_height // video.shape[1]))
    return video.repeat(scale, axis=1).repeat(scale, axis=2)


def _grid(videos: dict[str, np.ndarray]) -> np.ndarray:
    """recorded | skeleton | generated, side by side, upscaled."""
    return upscale(
        np.concatenate([videos["recorded"], videos["skeleton"], videos["model"]], axis=2)
    )


def summarize_rows(rows: list[dict[str, Any]], mask_source: str) -> dict[str, Any]:
    """``{variant: {skill: {metric: MetricResult.to_dict()}}}`` with an ``all`` row per variant."""
    from benchmarks.metrics import per_skill_summary

    out: dict[str, Any] = {}
    for variant in VARIANTS:
        records = [{"skill": r["skill"], **r[variant]} for r in rows]
        table = per_skill_summary(records, METRICS, mask_sources={"st_iou": mask_source})
        out[variant] = {
            skill: {m: res.to_dict() for m, res in metrics.items()}
            for skill, metrics in table.items()
        }
    return out


def format_table(report: dict[str, Any]) -> str:
    """The per-skill Markdown table (skill x variant) with the mask source, n and intervals."""
    from benchmarks.metrics import OVERALL, markdown_table

    def cell(r: dict[str, Any]) -> str:
        if r["value"] is None:  # NaNs are excluded from the mean, so None with n > 0 is inf
            return "inf (a frame copied exactly)" if r["n"] else "n/a"
        text = f"{r['value']:.3f}"
        if r["ci"]:
            text += f" [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
        return text + (f" (n={r['n']})" if r["n_excluded"] else "")

    summary = report["per_skill"]
    skills = [s for s in summary["model"] if s != OVERALL] + [OVERALL]
    rows = []
    for skill in skills:
        for variant in VARIANTS:
            res = summary[variant][skill]
            n = res["st_iou"]["n"] + res["st_iou"]["n_excluded"]
            rows.append([skill, variant, n] + [cell(res[m]) for m in METRICS])
    src = report["mask_source"]
    header = [
        "skill",
        "variant",
        "n",
        f"ST-IoU [{src}] (95% CI)",
        "PSNR dB (95% CI)",
        "SSIM (95% CI)",
    ]
    overall = {v: summary[v][OVERALL]["st_iou"]["value"] for v in VARIANTS}
    margins = ""
    if None not in overall.values():
        margins = (
            f"\n\nAll episodes: ST-IoU model - copy_last = {overall['model'] - overall['copy_last']:+.3f}, "
            f"model - blank_skeleton = {overall['model'] - overall['blank_skeleton']:+.3f}."
        )
    footer = report_footer(
        weights=report["weights"],
        rollout=report["rollout"],
        env_id=report["env_id"],
        n_episodes=report["n_episodes"],
        split=report["split"],
        mask_source=src,
        resolution_hw=report["resolution_hw"],
    )
    return markdown_table(header, rows) + margins + "\n\n" + footer


def per_skill_figure(report: dict[str, Any]) -> Any:
    """The ``matplotlib.figure.Figure`` of ``plot_per_skill``; the caller closes it."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    from benchmarks.metrics import OVERALL

    summary = report["per_skill"]
    skills = [s for s in summary["model"] if s != OVERALL] + [OVERALL]
    labels = {"st_iou": f"ST-IoU [{report['mask_source']}]", "psnr": "PSNR (dB)", "ssim": "SSIM"}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.5 * len(METRICS), 3.6))
    width = 0.8 / len(VARIANTS)
    x = np.arange(len(skills))
    for ax, metric in zip(axes, METRICS, strict=True):
        for j, variant in enumerate(VARIANTS):
            res = [summary[variant][s][metric] for s in skills]
            values = np.array([np.nan if r["value"] is None else r["value"] for r in res])
            err = np.array(
                [
                    [v - r["ci"][0], r["ci"][1] - v] if r["ci"] and np.isfinite(v) else [0.0, 0.0]
                    for v, r in zip(values, res, strict=True)
                ]
            ).T
            offset = (j - (len(VARIANTS) - 1) / 2) * width  # the group centred on its tick
            ax.bar(x + offset, values, width, yerr=err, capsize=2, label=variant)
        ticks = [f"{s}\n(n={summary['model'][s]['st_iou']['n']})" for s in skills]
        ax.set_xticks(x, ticks, fontsize=8)
        ax.set_title(labels[metric])
    # Right of the last panel: inside any panel it hid bars (the tall 'recorded' ones first).
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    n = report["n_episodes"]
    fig.suptitle(f"{report['weights']} on {n} episodes ({report['rollout']} rollout)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_per_skill(report: dict[str, Any], path: str | Path) -> Path:
    """Bar chart per skill (ST-IoU, PSNR, SSIM; one bar per variant, 95% intervals) as a PNG,
    the legend outside the panels."""
    fig = per_skill_figure(report)
    import matplotlib.pyplot as plt  # after per_skill_figure chose the Agg backend

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")  # tight: the outside legend is kept
    plt.close(fig)
    return path


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (0: leave as is), then restore the count."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(cfg: Config) -> dict[str, Any] | None:
    """Evaluate this process's share of the episodes; the main process returns the report (and
    writes the outputs), the others None."""
    with torch_threads(cfg.threads):
        return _run(cfg)


def _run(cfg: Config) -> dict[str, Any] | None:
    import gymnasium as gym
    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object, parse_flag_from_env
    from tqdm.auto import tqdm

    import vap_env  # noqa: F401  (registers the env ids)
    from benchmarks.masks import make_mask_source
    from vap_env.data import open_rlds
    from vap_env.registration import env_for_dataset
    from vap_env.video import write_video

    start = time.perf_counter()
    # PartialState finds a multi-process CPU run (torchrun, accelerate launch --cpu) only with cpu=True.
    cpu = cfg.device == "cpu" or parse_flag_from_env("ACCELERATE_USE_CPU")
    state = PartialState(cpu=cpu or not torch.cuda.is_available())
    dataset = open_rlds(cfg.data_dir)
    env_id = cfg.env_id or env_for_dataset(dataset.schema.name)
    total = dataset.num_episodes(cfg.split)
    indices = list(range(min(total, cfg.max_episodes) if cfg.max_episodes else total))
    if not indices:
        raise ValueError(f"split {cfg.split!r} of {cfg.data_dir} has no episodes")
    device = str(state.device) if cfg.device == "auto" else cfg.device
    # before the model loads: a missing SAM 2 checkpoint fails in a second, not after a minute
    source = make_mask_source(
        cfg.mask_source,
        **mask_source_config(
            cfg.mask_source,
            sam2_checkpoint=cfg.sam2_checkpoint,
            sam2_config=cfg.sam2_config,
            device=device,
        ),
    )
    kwargs: dict[str, Any] = {"num_inference_steps": cfg.num_inference_steps, "device": device}
    if cfg.weights is not None:
        kwargs["weights"] = cfg.weights
    env = gym.make(env_id, max_episode_steps=REPLAY_MAX_STEPS, **kwargs)
    out = Path(cfg.out_dir)
    rows: list[dict[str, Any]] = []
    with state.split_between_processes(indices) as mine:
        wanted = set(mine)
        bar = tqdm(
            total=len(mine),
            desc=f"st-iou [{state.process_index}]" if state.num_processes > 1 else "st-iou",
            unit="ep",
            disable=not cfg.progress,
        )
        # A corrupt record is skipped with a warning by the loader (and missing from n).
        for episode in dataset.episodes(cfg.split, select=wanted.__contains__):
            index = int(episode.episode_id.rpartition("_")[2])
            row, videos = evaluate_episode(
                env.unwrapped.core.world_model,
                env if cfg.rollout == "env" else None,
                episode,
                source,
                seed=episode_seed(cfg.seed, index),
                num_inference_steps=cfg.num_inference_steps,
            )
            rows.append({"episode_id": row.pop("episode_id"), "index": index, **row})
            if index < cfg.videos:
                write_video(
                    out / "videos" / f"{episode.episode_id}.mp4",
                    _grid(videos),
                    fps=env.unwrapped.config.render_fps,
                )
            bar.update(1)
        bar.close()
    weights = env.unwrapped.config.weights
    weights_dir = env.unwrapped.core.world_model.config.weights  # None: random initialisation
    resolution = [env.unwrapped.core.height, env.unwrapped.core.width]
    env.close()
    rows = gather_object(rows) if state.num_processes > 1 else rows
    if not state.is_main_process:
        return None
    rows = sorted(rows, key=lambda r: r["index"])
    report = {
        "benchmark": "st_iou",
        "config": dataclasses.asdict(cfg),
        "weights": weights,
        "weights_dir": weights_dir,
        "env_id": env_id,
        "rollout": cfg.rollout,
        "mask_source": source.name,
        "split": cfg.split,
        "n_episodes": len(rows),
        "num_processes": state.num_processes,
        "resolution_hw": resolution,
        "episodes": rows,
        "per_skill": summarize_rows(rows, source.name),
        "by_chunk": by_chunk_summary(rows),
        "notes": {"null": NULL_NOTE},
    }
    out.mkdir(parents=True, exist_ok=True)
    report["outputs"] = {
        "json": str(out / "st_iou.json"),
        "markdown": str(out / "st_iou.md"),
        "png": str(plot_per_skill(report, out / "st_iou.png")),
        "videos": [
            str(out / "videos" / f"{r['episode_id']}.mp4") for r in rows if r["index"] < cfg.videos
        ],
    }
    report["seconds"] = time.perf_counter() - start
    (out / "st_iou.md").write_text("# Per-skill ST-IoU\n\n" + format_table(report) + "\n")
    text = dumps(report)  # strict: NaN / inf as null
    for path in [out / "st_iou.json"] + ([Path(cfg.json)] if cfg.json else []):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return report


def main(cfg: Config) -> int:
    """Run the benchmark and print the per-skill table (main process)."""
    report = run(cfg)
    if report is not None:
        print(format_table(report))
        print(
            f"\nwrote {report['outputs']['markdown']}, {report['outputs']['png']}, "
            f"{report['outputs']['json']} and {len(report['outputs']['videos'])} videos"
        )
    return 0
