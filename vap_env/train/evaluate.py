"""Acceptance figures of a trained world model on held-out synthetic episodes.

For each episode of a split: start from its first frame and roll the world model out chunk by
chunk over the episode's own motion, feeding back the last generated frame as the next context;
compare the T-1 generated frames with the recorded ones. Two ways to drive the rollout:

- ``rollout="skeleton"``: the skeleton video rendered from the episode's logged states (exactly
  the prompts the model was trained on; ``vap_env.data.render_skeleton``), through
  ``WorldModel.generate_chunk``;
- ``rollout="env"``: the product path, ``gym.make`` with ``reset(options={"episode": ep})`` and the
  episode's actions replayed chunk by chunk (the env's kinematics render the skeleton).

Baselines, always through ``generate_chunk``: ``copy_last`` (every frame is the first frame: a model
that ignores the action) and ``blank_skeleton`` (the same model with an all-black skeleton prompt:
how much of the fidelity comes from following the prompt). And a ceiling: ``vae_reconstruction``,
the recorded frames encoded and decoded by the model's own VAE chunk by chunk (context + K frames,
as generated): what a perfect transformer could score with this VAE; and ``recorded``, the recorded
frames themselves: the metric's own ceiling (the mask source sees the generated frames only through
their pixels, so even the truth scores below 1 at a low resolution).

Metrics (``benchmarks.metrics``): ST-IoU with a pluggable mask source (default ``sim``: the
simulator's gripper + manipulated-object masks for the reference, colour-prototype transfer for
generated frames, see ``benchmarks.masks``), PSNR and SSIM, each as a mean with a bootstrap 95%
interval over episodes. The mask source is reported with every ST-IoU. ST-IoU and PSNR are also
given chunk by chunk (mean over episodes of chunk 1, 2, ...): chunk 1 starts from a recorded frame,
every later one from a generated frame, so the breakdown separates a model's one-chunk fidelity from
the errors its rollout compounds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from benchmarks.masks import (
    MASK_SOURCE_HELP,
    SAM2_CHECKPOINT_HELP,
    SAM2_CONFIG_HELP,
    mask_source_config,
)
from vap_env.config import did_you_mean
from vap_env.strict_json import write_json

if TYPE_CHECKING:
    from vap_env.models import WorldModel

VARIANTS: tuple[str, ...] = (
    "model",
    "copy_last",
    "blank_skeleton",
    "vae_reconstruction",
    "recorded",
)
ROLLOUTS: tuple[str, ...] = ("skeleton", "env")
# The --rollout help of both commands that roll a model out (vap-env train eval, bench st-iou).
ROLLOUT_HELP = (
    "how the model is driven over each episode: 'skeleton' feeds it the skeleton video rendered "
    "from the episode's logged states (the prompts it was trained on), 'env' is the product path "
    "(gym.make(env_id), reset from the episode's first frame and state, its recorded actions "
    "replayed chunk by chunk; the env's kinematics render the skeleton, so the prompt, and the "
    "numbers, differ slightly). vap-env train eval defaults to skeleton (the model alone, as "
    "trained), vap-env bench st-iou to env (the path a policy sees)."
)
# What a null metric in the JSON reports means (vap_env.strict_json writes no NaN / Infinity).
NULL_NOTE = (
    "null is a value that is not a finite number: the PSNR of identical frames is infinite "
    "(recorded; copy_last on frames that do not change), an ST-IoU whose masks are both empty is "
    "NaN (left out of the means and counted in n_excluded)"
)


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how."""

    weights: str = field(metadata={"help": "world model: weights directory or preset name"})
    data_dir: str = field(metadata={"help": "synthetic RLDS dataset directory (with ground truth)"})
    split: str = field(default="test", metadata={"help": "held-out split to evaluate"})
    max_episodes: int = field(default=0, metadata={"help": "evaluate at most N episodes (0: all)"})
    num_inference_steps: int | None = field(
        default=None, metadata={"help": "denoising steps (None: the model config's)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the generation noise"})
    control_scale: float | None = field(
        default=None,
        metadata={
            "help": "scale of the ControlNet's skeleton residuals (None: the model config's)"
        },
    )
    mask_source: str = field(default="sim", metadata={"help": MASK_SOURCE_HELP})
    sam2_checkpoint: str | None = field(default=None, metadata={"help": SAM2_CHECKPOINT_HELP})
    sam2_config: str | None = field(default=None, metadata={"help": SAM2_CONFIG_HELP})
    rollout: str = field(default="skeleton", metadata={"help": ROLLOUT_HELP})
    env_id: str | None = field(
        default=None,
        metadata={
            "help": "env id of --rollout env (None: the dataset's, e.g. VAP-DROID-v0 for DROID)"
        },
    )
    skeleton_from_ground_truth: bool = field(
        default=True,
        metadata={"help": "draw the whole arm from the synthetic ground-truth joints (as the env)"},
    )
    device: str = field(
        default="auto",
        metadata={"help": "torch device of the model; auto: cuda if present, else cpu"},
    )

    def __post_init__(self) -> None:
        check_rollout(self.rollout)
        if self.max_episodes < 0:
            raise ValueError(f"max_episodes={self.max_episodes} must be >= 0 (0: all)")
        if self.control_scale is not None and not math.isfinite(self.control_scale):
            raise ValueError(f"control_scale={self.control_scale} must be a finite number")
        mask_source_config(
            self.mask_source, sam2_checkpoint=self.sam2_checkpoint, sam2_config=self.sam2_config
        )

    def mask_source_fields(self) -> dict[str, Any]:
        """The fields ``make_mask_source(self.mask_source, **fields)`` takes from these options."""
        return mask_source_config(
            self.mask_source,
            sam2_checkpoint=self.sam2_checkpoint,
            sam2_config=self.sam2_config,
            device=resolve_device(self.device),
        )


def check_rollout(rollout: str) -> None:
    """Raise ``ValueError`` (with a did-you-mean) unless ``rollout`` is one of ``ROLLOUTS``."""
    if rollout not in ROLLOUTS:
        raise ValueError(
            f"rollout={rollout!r} is not one of {list(ROLLOUTS)}."
            + did_you_mean(rollout, list(ROLLOUTS))
        )


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; other names unchanged."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def episode_seed(seed: int, index: int) -> int:
    """The generation-noise seed of episode ``index`` in a run seeded ``seed``.

    Seed 0 gives episode i seed i; another run seed starts 100003 seeds further, so two runs'
    episodes never share noise (``seed + index`` made seed 1's episode 0 seed 0's episode 1).
    """
    return seed * 100_003 + index


def _resize(video: np.ndarray, width: int, height: int, interp: int) -> np.ndarray:
    if video.shape[1:3] == (height, width):
        return video
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in video])


@torch.no_grad()
def rollout_skeleton(
    wm: WorldModel,
    first: np.ndarray,
    skeleton: np.ndarray,
    instruction: str,
    seed: int,
    num_inference_steps: int | None = None,
) -> np.ndarray:
    """Autoregressive generation over a skeleton video.

    Args:
        first: (H, W, 3) uint8, the first frame.
        skeleton: (1 + n*K, H, W, 3) uint8, skeleton of every frame (frame 0 = first frame's state).
    Returns: (1 + n*K, H, W, 3) uint8: the first frame followed by the generated frames.
    """
    k = wm.config.chunk_frames
    chunks = (len(skeleton) - 1) // k
    if chunks < 1:
        raise ValueError(f"{len(skeleton)} skeleton frames are fewer than one chunk (1 + K={k})")
    gen = torch.Generator().manual_seed(seed)
    frames = [torch.from_numpy(first)]
    context = frames[0][None]
    for c in range(chunks):
        skel = torch.from_numpy(np.ascontiguousarray(skeleton[c * k : c * k + k + 1]))[None]
        out = wm.generate_chunk(
            context, skel, [instruction], generator=[gen], num_inference_steps=num_inference_steps
        )  # (1, K, H, W, 3)
        frames.extend(out[0])
        context = out[:, -1]
    return torch.stack(frames).numpy()


@torch.no_grad()
def vae_reconstruction(wm: WorldModel, reference: np.ndarray) -> np.ndarray:
    """The recorded video (1 + n*K, H, W, 3) uint8 through the VAE, one chunk window at a time."""
    from vap_env.models.world_model import frames_to_uint8

    k = wm.config.chunk_frames
    frames = [torch.from_numpy(reference[0])]
    for c in range((len(reference) - 1) // k):
        window = torch.from_numpy(np.ascontiguousarray(reference[c * k : c * k + k + 1]))
        x = window.permute(0, 3, 1, 2)[None].float() / 127.5 - 1.0  # (1, K+1, 3, H, W)
        out = frames_to_uint8(wm.decode_latents(wm.encode_video(x)))  # (1, K+1, H, W, 3)
        frames.extend(out[0, 1:])
    return torch.stack(frames).numpy()


def _rollout_env(env, episode, k: int, seed: int) -> np.ndarray:
    obs, _ = env.reset(seed=seed, options={"episode": episode})
    frames = [obs["image"]]
    chunks = (episode.num_steps - 1) // k
    for c in range(chunks):
        _, _, terminated, truncated, info = env.step(episode.actions[c * k : c * k + k])
        frames.extend(info["frames"])
        if terminated or truncated:
            break
    return np.stack(frames)


class _KeepSkeleton:
    """Wraps an env for ``_rollout_env`` and keeps the skeleton prompt it renders."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.skeleton: list[np.ndarray] = []  # (H, W, 3) uint8 per frame

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.skeleton = [obs["skeleton"]]
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Any, ...]:
        result = self.env.step(action)
        self.skeleton.extend(result[4]["skeleton_frames"])
        return result


# gym.make's TimeLimit for replaying recordings: None would mean the registered limit (10 chunks
# for RT-1), and a replay must cover the whole recording, however long.
REPLAY_MAX_STEPS = 1_000_000


def evaluate_episode(
    wm: WorldModel,
    env: Any | None,
    episode: Any,
    source: Any,
    *,
    seed: int,
    num_inference_steps: int | None = None,
    skeleton_from_ground_truth: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Roll out one episode with the model, the baselines and the ceilings; score each variant.

    Args:
        wm: the world model (the env's, when ``env`` is given).
        env: ``gym.make(...)`` env for the product-path rollout, or None to drive ``wm`` with the
            skeleton rendered from the logged states.
        episode: a ``vap_env.data.Episode`` (ground truth needed by the ``sim`` mask source).
        source: the mask source (``benchmarks.masks.make_mask_source``).
        seed: the generation noise seed of this episode.

    Returns:
        ``({"episode_id", "skill", <variant>: {st_iou, psnr, ssim, st_iou_by_chunk,
        psnr_by_chunk}}, videos)``, the ``_by_chunk`` lists over the episode's chunks; videos holds
        ``skeleton`` (the prompt) and one video per variant, each (1 + n*K, H, W, 3) uint8 at the
        model's resolution.
    """
    from benchmarks.metrics import psnr, ssim, st_iou
    from vap_env.data import render_skeleton

    h, w, k = wm.config.height, wm.config.width, wm.config.chunk_frames
    gt = episode.ground_truth
    if gt is None and source.name == "sim":
        raise ValueError(
            f"episode {episode.episode_id} has no ground truth: the 'sim' mask source needs a "
            "synthetic dataset (vap-env data synth); use --mask-source motion for real data"
        )
    usable = 1 + (episode.num_steps - 1) // k * k
    if usable < 1 + k:
        raise ValueError(
            f"episode {episode.episode_id} has {episode.num_steps} steps, fewer than one chunk "
            f"(1 + K = {1 + k})"
        )
    reference = _resize(episode.frames[:usable], w, h, cv2.INTER_AREA)
    masks = None
    if gt is not None:
        masks = _resize(
            (gt.gripper_masks | gt.object_masks)[:usable].astype(np.uint8), w, h, cv2.INTER_NEAREST
        ).astype(bool)
    logged = render_skeleton(
        episode, w, h, from_ground_truth=skeleton_from_ground_truth and gt is not None
    )[:usable]
    if env is not None:
        recorder = _KeepSkeleton(env)
        generated = _rollout_env(recorder, episode, k, seed)[:usable]
        skeleton = np.stack(recorder.skeleton)[:usable]
    else:
        skeleton = logged
        generated = rollout_skeleton(
            wm, reference[0], skeleton, episode.instruction, seed, num_inference_steps
        )
    videos = {
        "skeleton": skeleton,
        "model": generated,
        "copy_last": np.repeat(reference[:1], usable, axis=0),
        "blank_skeleton": rollout_skeleton(
            wm, reference[0], np.zeros_like(logged), episode.instruction, seed, num_inference_steps
        ),
        "vae_reconstruction": vae_reconstruction(wm, reference),
        "recorded": reference,
    }
    row: dict[str, Any] = {"episode_id": episode.episode_id, "skill": episode.skill}
    # frame 0 is given to every variant: score the generated frames only
    ref = reference[1:]
    gt_masks = None if masks is None else masks[1:]
    m_ref = source.masks(ref, None, gt_masks)  # (T-1, H, W) bool
    chunks = [slice(c * k, (c + 1) * k) for c in range(len(ref) // k)]
    for variant in VARIANTS:
        gen = videos[variant][1:]
        if len(gen) != len(ref):
            raise RuntimeError(
                f"episode {episode.episode_id}: {variant} has {len(gen)} generated frames, the "
                f"recording {len(ref)} (did the env truncate the replay?)"
            )
        m_gen = source.masks(gen, ref, gt_masks)
        row[variant] = {
            "st_iou": st_iou(m_gen, m_ref),
            "psnr": psnr(gen, ref),
            "ssim": ssim(gen, ref),
            # chunk c is generated from chunk c-1's last frame: how errors compound in a rollout
            "st_iou_by_chunk": [st_iou(m_gen[c], m_ref[c]) for c in chunks],
            "psnr_by_chunk": [psnr(gen[c], ref[c]) for c in chunks],
        }
    return row, videos


def by_chunk_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[Any]]]:
    """Per variant: mean ST-IoU and PSNR of chunk c over the episodes that have a chunk c.

    Episodes differ in length, so ``n[c]`` counts the episodes behind chunk c; NaN ST-IoUs (both
    masks empty) are left out as in the summary, and a mean that is not finite is None (JSON).
    """
    out: dict[str, dict[str, list[Any]]] = {}
    for variant in VARIANTS:
        longest = max(len(r[variant]["st_iou_by_chunk"]) for r in rows)
        entry: dict[str, list[Any]] = {"st_iou": [], "psnr": [], "n": []}
        for c in range(longest):
            have = [r[variant] for r in rows if len(r[variant]["st_iou_by_chunk"]) > c]
            entry["n"].append(len(have))
            for m in ("st_iou", "psnr"):
                v = np.array([h[f"{m}_by_chunk"][c] for h in have], dtype=np.float64)
                v = v[~np.isnan(v)]
                mean = float(v.mean()) if len(v) else float("nan")
                entry[m].append(mean if math.isfinite(mean) else None)
        out[variant] = entry
    return out


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Roll out every episode with the model, the baselines and the VAE ceiling; summarise.

    Returns: ``{"config", "mask_source", "resolution_hw", "episodes": [{id, skill, variant:
    {st_iou, psnr, ssim, st_iou_by_chunk, psnr_by_chunk}}], "summary": {variant: {metric:
    MetricResult.to_dict()}}, "by_chunk": {variant: {st_iou, psnr, n}} (lists over chunk index),
    "margins": {...}, "notes"}``. Episode values may be NaN / inf; ``write_report`` writes null.
    """
    from benchmarks.masks import make_mask_source
    from benchmarks.metrics import summarize
    from vap_env.data import open_rlds
    from vap_env.models import load_world_model

    source = make_mask_source(cfg.mask_source, **cfg.mask_source_fields())
    device = resolve_device(cfg.device)
    dataset = open_rlds(cfg.data_dir)
    env = env_id = None
    if cfg.rollout == "env":
        import gymnasium as gym

        import vap_env  # noqa: F401  (registers the env ids)
        from vap_env.registration import env_for_dataset

        env_id = cfg.env_id or env_for_dataset(dataset.schema.name)
        env = gym.make(
            env_id,
            weights=cfg.weights,
            num_inference_steps=cfg.num_inference_steps,
            device=device,
            max_episode_steps=REPLAY_MAX_STEPS,
        )
        wm = env.unwrapped.core.world_model  # one model for the rollout and the baselines
    else:
        wm = load_world_model(cfg.weights, device=device)
    if cfg.control_scale is not None:
        # an inference-time knob read at every chunk: the env's model picks it up as well
        wm.config = dataclasses.replace(wm.config, control_scale=cfg.control_scale)
    rows = []
    for n, episode in enumerate(dataset.episodes(cfg.split)):
        if cfg.max_episodes and n >= cfg.max_episodes:
            break
        if episode.ground_truth is None:
            raise ValueError(
                f"episode {episode.episode_id} has no ground truth: the acceptance metrics need a "
                "synthetic dataset (vap-env data synth)"
            )
        row, _ = evaluate_episode(
            wm,
            env,
            episode,
            source,
            seed=episode_seed(cfg.seed, n),
            num_inference_steps=cfg.num_inference_steps,
            skeleton_from_ground_truth=cfg.skeleton_from_ground_truth,
        )
        rows.append(row)
    if env is not None:
        env.close()
    if not rows:
        raise ValueError(f"split {cfg.split!r} of {cfg.data_dir} has no episodes")
    summary = {
        v: {
            m: summarize(
                [r[v][m] for r in rows],
                name=m,
                mask_source=source.name if m == "st_iou" else None,
            ).to_dict()
            for m in ("st_iou", "psnr", "ssim")
        }
        for v in VARIANTS
    }
    model_iou = summary["model"]["st_iou"]["value"]
    margins: dict[str, Any] = {
        "st_iou_minus_copy_last": model_iou - summary["copy_last"]["st_iou"]["value"],
        "st_iou_minus_blank_skeleton": model_iou - summary["blank_skeleton"]["st_iou"]["value"],
    }
    for baseline in ("copy_last", "blank_skeleton"):
        margins[f"st_iou_minus_{baseline}_ci"] = paired_margin_ci(rows, baseline)
    margins["ci_note"] = (
        "95% bootstrap intervals of the per-episode differences (model and baseline scored on the "
        "same episodes, with the same noise), over the episodes where both are defined"
    )
    return {
        "config": dataclasses.asdict(cfg),
        "device": device,  # what --device auto became
        "env_id": env_id,  # what env_id None became (None: no env rollout)
        "mask_source": source.name,
        "resolution_hw": [wm.config.height, wm.config.width],
        "episodes": rows,
        "summary": summary,
        "by_chunk": by_chunk_summary(rows),
        "margins": margins,
        "notes": {"null": NULL_NOTE},
    }


def paired_margin_ci(
    rows: list[dict[str, Any]], baseline: str, metric: str = "st_iou"
) -> list[float] | None:
    """95% bootstrap interval of the mean per-episode ``model - baseline`` difference of ``metric``.

    Paired: each episode's model and baseline are scored on the same frames, so the interval of
    the difference is much tighter than the two means' intervals suggest. None under 2 episodes.
    """
    from benchmarks.metrics import bootstrap_ci

    diffs = [
        r["model"][metric] - r[baseline][metric]
        for r in rows
        if math.isfinite(r["model"][metric]) and math.isfinite(r[baseline][metric])
    ]
    return list(bootstrap_ci(diffs)) if len(diffs) >= 2 else None


def report_footer(
    *,
    weights: str | None,
    rollout: str,
    env_id: str | None,
    n_episodes: int,
    split: str,
    mask_source: str,
    resolution_hw: tuple[int, int] | list[int],
) -> str:
    """The line under a results table that restates what was measured (train eval, bench st-iou).

    ``env_id`` is named only for the ``env`` rollout, the one that runs it."""
    via = f" ({env_id})" if env_id and rollout == "env" else ""
    episodes = f"{n_episodes} episode{'s' if n_episodes != 1 else ''}"
    return (
        f"World model {weights!r}, rollout {rollout!r}{via}, {episodes} of split {split!r}, "
        f"mask source {mask_source!r}, {resolution_hw[0]}x{resolution_hw[1]} frames."
    )


def format_report(report: dict[str, Any]) -> str:
    """A Markdown table of the summary (variant x metric), the ST-IoU margins, the by-chunk table
    and a footer restating the weights, rollout, episodes and mask source (``report_footer``)."""
    from benchmarks.metrics import markdown_table

    src = report["config"]["mask_source"]
    rows = []
    for variant, metrics in report["summary"].items():
        cells = [variant]
        for m in ("st_iou", "psnr", "ssim"):
            r = metrics[m]
            ci = r["ci"]
            if r["value"] is None:  # not finite: PSNR of identical videos is infinite
                value = "inf" if m == "psnr" else "nan"
            else:
                value = f"{r['value']:.3f}"
            ci_ok = ci is not None and None not in ci
            cells.append(value + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci_ok else ""))
        cells.append(metrics["st_iou"]["n"])
        rows.append(cells)
    table = markdown_table(["variant", f"ST-IoU ({src})", "PSNR (dB)", "SSIM", "n"], rows)
    m = report["margins"]

    def margin(baseline: str) -> str:
        ci = m.get(f"st_iou_minus_{baseline}_ci")  # reports saved before the intervals lack it
        interval = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
        return f"{m[f'st_iou_minus_{baseline}']:+.3f}{interval}"

    text = (
        table
        + f"\n\nST-IoU - copy_last = {margin('copy_last')} (target >= +0.15); "
        + f"ST-IoU - blank_skeleton = {margin('blank_skeleton')} (target >= +0.10)"
        + (" (paired 95% bootstrap intervals over episodes)" if "ci_note" in m else "")
    )
    by_chunk = report.get("by_chunk")
    if by_chunk:

        def cell(iou: float | None, db: float | None) -> str:
            return (
                ("nan" if iou is None else f"{iou:.3f}")
                + " / "
                + ("inf" if db is None else f"{db:.1f}")
            )

        n = by_chunk["model"]["n"]
        rows = [
            [v, *(cell(i, d) for i, d in zip(e["st_iou"], e["psnr"], strict=True))]
            for v, e in by_chunk.items()
        ]
        heads = ["ST-IoU / PSNR by chunk", *(f"{c + 1} (n={k})" for c, k in enumerate(n))]
        text += "\n\n" + markdown_table(heads, rows)
    cfg = report["config"]
    footer = report_footer(
        weights=cfg["weights"],
        rollout=cfg["rollout"],
        env_id=report["env_id"],
        n_episodes=len(report["episodes"]),
        split=cfg["split"],
        mask_source=src,
        resolution_hw=report["resolution_hw"],
    )
    return text + "\n\n" + footer


def write_report(report: dict[str, Any], path: str | Path) -> None:
    """Strict JSON of ``evaluate``'s result: NaN / inf are null (``vap_env.strict_json``)."""
    write_json(path, report)


def diffusion_loss(
    weights: str,
    data_dir: str,
    *,
    split: str = "test",
    train_config: str = "tiny-rt1-gpu",
    batches: int = 12,
    batch_size: int = 16,
    seed: int = 123,
    device: str = "cpu",
) -> dict[str, Any]:
    """Mean diffusion loss of trained weights on clips of a split, for comparing models or splits.

    The objective of ``train_config``'s diffusion stage (its clip windows, gripper weighting and
    mask) with no instruction dropout and a clean context frame. The clips, the noise and the
    timesteps depend on ``seed`` only, so two models scored with the same arguments see exactly the
    same inputs; a training split against a held-out one measures overfitting.

    Returns: ``{"loss": mean over batches, "batches", "clips", "split", "weights"}``.
    """
    from vap_env.data.clip_cache import ClipCacheMismatch
    from vap_env.models import load_world_model
    from vap_env.train.config import load_train_config
    from vap_env.train.data import clip_loader
    from vap_env.train.trainer import ClipBatch, TrainingModule

    if batches < 1 or batch_size < 1:
        raise ValueError(f"batches={batches} and batch_size={batch_size} must be >= 1")
    cfg = load_train_config(train_config)
    cfg = dataclasses.replace(
        cfg,
        stage="diffusion",
        batch_size=batch_size,
        seed=seed,
        cache_latents=False,
        lgf=dataclasses.replace(cfg.lgf, weight=0.0),
        diffusion=dataclasses.replace(cfg.diffusion, cfg_dropout=0.0, context_noise=0.0),
        data=dataclasses.replace(cfg.data, data_dir=data_dir, num_workers=0),
    )
    wm = load_world_model(weights, device=device)
    module = TrainingModule(wm, cfg).eval()
    generator = torch.Generator().manual_seed(seed)
    losses = []
    try:
        loader = clip_loader(cfg, wm.config, 0, split=split, shuffle=True)
    except ClipCacheMismatch as err:  # a cache made for another training config
        raise ClipCacheMismatch(
            f"{err} (the clip settings come from train_config={train_config!r}: pass the "
            "training config these weights were trained with, --train-config <preset or YAML>)"
        ) from err
    with torch.no_grad():
        for batch in loader:
            out = module(ClipBatch.from_items(batch, torch.device(device)), generator)
            losses.append(out["diffusion"].item())
            if len(losses) == batches:
                break
    if not losses:
        raise ValueError(
            f"split {split!r} of {data_dir} has fewer than batch_size={batch_size} clips: lower "
            "--batch-size"
        )
    return {
        "weights": weights,
        "split": split,
        "loss": float(np.mean(losses)),
        "batches": len(losses),
        "batches_asked": batches,
        "clips": len(losses) * batch_size,
    }
