"""Mask sources for ST-IoU: where the action-relevant region (gripper + manipulated object) comes from.

A mask source turns a video into a (T, H, W) bool mask video. Three are registered
(``make_mask_source(name, **config)``; ``available_mask_sources()``):

``motion``
    Pixels whose colour changed from the first frame by more than a threshold, cleaned up with a
    small morphological opening (drops isolated speckle) and closing (fills pin holes). Works on
    any video, needs no weights and no ground truth. It marks where things *moved*, so both the
    old and the new place of a moved object count, and a static gripper does not; frame 0 is empty
    by construction.
``sim``
    Ground truth of the synthetic renderer (its segmentation buffer: gripper links + manipulated
    object). Only the reference video was rendered by the simulator, so only it has true masks.
    For a generated video this source *approximates* them: it fits colour prototypes (k-means in
    CIELAB) to the reference's foreground pixels and to its background pixels, and labels each
    generated pixel by its nearest prototype. That is faithful when the robot/object colours
    differ from the background (as in the synthetic scene, which uses saturated primitive
    colours), and wrong where the background has the object's colour or the model changed the
    object's colour.
``sam2``
    SAM 2 video object tracking (package ``sam2``, extra ``vap-env[sam2]``) from a user-supplied
    checkpoint and model config, prompted on one frame with a mask: the ground truth's first frame
    when given (the generated video starts from the reference's first frame, so the same prompt
    fits both), else the first non-empty ``motion`` mask.

``video_st_iou`` puts it together for one (generated, reference) pair and returns a
``MetricResult`` that names the source. ``mask_source_config`` turns the command-line options of
``vap-env train eval`` and ``vap-env bench st-iou`` (``--mask-source``, ``--sam2-checkpoint``,
``--sam2-config``) into ``make_mask_source``'s fields, checking them while the arguments are parsed.
"""

from __future__ import annotations

import dataclasses
import importlib
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import cv2
import numpy as np
import torch

from benchmarks.metrics import MetricResult, st_iou
from vap_env._optional import require
from vap_env.config import did_you_mean, from_dict


@runtime_checkable
class MaskSource(Protocol):
    """Turns a video into masks of the action-relevant region."""

    name: str

    def masks(
        self,
        video: np.ndarray,
        reference: np.ndarray | None = None,
        ground_truth: np.ndarray | None = None,
    ) -> np.ndarray:
        """Masks of ``video``.

        Args:
            video: (T, H, W, 3) uint8, the video to segment.
            reference: (T, H, W, 3) uint8, the video ``ground_truth`` belongs to, when that is not
                ``video`` itself (i.e. when ``video`` is a generated video); None when ``video``
                is the reference.
            ground_truth: (T, H, W) bool, true masks of the reference, if known.

        Returns:
            (T, H, W) bool.
        """
        ...


def _check_video(video: Any, what: str = "video") -> np.ndarray:
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu().numpy()
    if not isinstance(video, np.ndarray) or video.dtype != np.uint8:
        raise TypeError(
            f"{what} must be a uint8 array (T, H, W, 3), got "
            f"{getattr(video, 'dtype', type(video).__name__)}"
        )
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"{what} must have shape (T, H, W, 3), got {video.shape}")
    return video


def _check_masks(masks: Any, shape: tuple[int, ...], what: str = "ground_truth") -> np.ndarray:
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.dtype != np.bool_ or masks.shape != shape:
        raise ValueError(
            f"{what} must be a bool array of shape {shape} (one mask per video frame), got "
            f"{masks.dtype} {masks.shape}"
        )
    return masks


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _clean(masks: np.ndarray, open_radius: int, close_radius: int) -> np.ndarray:
    """Morphological opening then closing of each frame: (T, H, W) bool -> (T, H, W) bool."""
    out = masks.astype(np.uint8)
    for t in range(len(out)):
        if open_radius > 0:
            out[t] = cv2.morphologyEx(out[t], cv2.MORPH_OPEN, _disk(open_radius))
        if close_radius > 0:
            out[t] = cv2.morphologyEx(out[t], cv2.MORPH_CLOSE, _disk(close_radius))
    return out.astype(bool)


# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MotionMasksConfig:
    """Thresholded change from the first frame, then a morphological clean-up."""

    threshold: float = dataclasses.field(
        default=25.0,
        metadata={"help": "a pixel moved if any channel changed by more than this (0..255)"},
    )
    blur_sigma: float = dataclasses.field(
        default=0.0,
        metadata={
            "help": "Gaussian blur before differencing (0 = off); suppresses pixel noise but "
            "grows every mask by about a sigma, so the opening is the default defence"
        },
    )
    open_radius: int = dataclasses.field(
        default=1, metadata={"help": "opening disk radius in pixels: removes specks (0 = off)"}
    )
    close_radius: int = dataclasses.field(
        default=1, metadata={"help": "closing disk radius in pixels: fills pin holes (0 = off)"}
    )

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 255:
            raise ValueError(f"threshold must be in [0, 255), got {self.threshold}")
        if self.blur_sigma < 0 or self.open_radius < 0 or self.close_radius < 0:
            raise ValueError(f"blur_sigma and radii must be >= 0, got {self}")


class MotionMasks:
    """``motion`` source: where the video changed from its first frame (see module docstring)."""

    name = "motion"
    config_class: ClassVar[type] = MotionMasksConfig

    def __init__(self, cfg: MotionMasksConfig | None = None) -> None:
        self.cfg = cfg or MotionMasksConfig()

    def masks(
        self,
        video: np.ndarray,
        reference: np.ndarray | None = None,
        ground_truth: np.ndarray | None = None,
    ) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, H, W) bool; ``reference``/``ground_truth`` are not used."""
        video = _check_video(video)
        frames = video.astype(np.float32)
        if self.cfg.blur_sigma > 0:
            frames = np.stack([cv2.GaussianBlur(f, (0, 0), self.cfg.blur_sigma) for f in frames])
        change = np.abs(frames - frames[:1]).max(axis=-1)  # (T, H, W)
        return _clean(change > self.cfg.threshold, self.cfg.open_radius, self.cfg.close_radius)


# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimMasksConfig:
    """Ground truth for the rendered reference; nearest colour prototypes for a generated video."""

    fg_prototypes: int = dataclasses.field(
        default=6,
        metadata={"help": "k-means colour prototypes of the foreground (gripper, object)"},
    )
    bg_prototypes: int = dataclasses.field(
        default=12, metadata={"help": "k-means colour prototypes of the background"}
    )
    max_fit_pixels: int = dataclasses.field(
        default=20000, metadata={"help": "pixels sampled per class to fit the prototypes"}
    )
    open_radius: int = dataclasses.field(
        default=1, metadata={"help": "opening radius applied to the colour segmentation (0 = off)"}
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of sampling and k-means"})

    def __post_init__(self) -> None:
        if self.fg_prototypes < 1 or self.bg_prototypes < 1 or self.max_fit_pixels < 1:
            raise ValueError(f"prototype counts and max_fit_pixels must be >= 1, got {self}")


class SimMasks:
    """``sim`` source: synthetic ground truth, colour-prototype transfer for generated videos."""

    name = "sim"
    config_class: ClassVar[type] = SimMasksConfig

    def __init__(self, cfg: SimMasksConfig | None = None) -> None:
        self.cfg = cfg or SimMasksConfig()

    def _prototypes(self, pixels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """k-means centres (k', 3) of Lab pixels (N, 3); k' = min(k, number of distinct pixels)."""
        if len(pixels) > self.cfg.max_fit_pixels:
            pixels = pixels[rng.choice(len(pixels), self.cfg.max_fit_pixels, replace=False)]
        k = min(k, len(np.unique(pixels, axis=0)))
        cv2.setRNGSeed(self.cfg.seed)  # cv2.kmeans draws its k-means++ seeds from OpenCV's RNG
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.1)
        _, _, centres = cv2.kmeans(
            pixels.astype(np.float32), k, None, criteria, 3, cv2.KMEANS_PP_CENTERS
        )
        return centres

    def masks(
        self,
        video: np.ndarray,
        reference: np.ndarray | None = None,
        ground_truth: np.ndarray | None = None,
    ) -> np.ndarray:
        """Ground truth if ``reference`` is None, else a colour-prototype segmentation of ``video``.

        Raises:
            ValueError: ``ground_truth`` is missing (only synthetic episodes have it), or the
                reference's ground truth has no foreground or no background pixel to learn from.
        """
        video = _check_video(video)
        if ground_truth is None:
            raise ValueError(
                "the 'sim' mask source needs ground_truth masks (T, H, W) of the reference; only "
                "synthetic episodes have them (Episode.ground_truth). Use 'motion' or 'sam2' for "
                "real videos."
            )
        if reference is None:
            return _check_masks(ground_truth, video.shape[:3])
        reference = _check_video(reference, "reference")
        gt = _check_masks(ground_truth, reference.shape[:3])
        ref_lab = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2LAB) for f in reference]).reshape(-1, 3)
        gt = gt.reshape(-1)
        if gt.all() or not gt.any():
            raise ValueError(
                "the reference ground truth must contain both foreground and background pixels "
                f"to fit colour prototypes; it has {int(gt.sum())} foreground of {gt.size}"
            )
        rng = np.random.default_rng(self.cfg.seed)
        fg = self._prototypes(ref_lab[gt], self.cfg.fg_prototypes, rng)
        bg = self._prototypes(ref_lab[~gt], self.cfg.bg_prototypes, rng)
        protos = torch.from_numpy(np.concatenate([fg, bg]))  # (P, 3)
        lab = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2LAB) for f in video])  # (T, H, W, 3)
        pix = torch.from_numpy(lab.reshape(-1, 3).astype(np.float32))
        nearest = torch.cdist(pix, protos).argmin(dim=1)  # (T*H*W,)
        seg = (nearest < len(fg)).numpy().reshape(video.shape[:3])
        return _clean(seg, self.cfg.open_radius, 0)


# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SAM2MasksConfig:
    """SAM 2 video predictor from a user-supplied checkpoint (nothing is downloaded)."""

    checkpoint: str = dataclasses.field(
        metadata={"help": "path of a SAM 2 checkpoint (.pt), e.g. sam2.1_hiera_small.pt"}
    )
    model_config: str = dataclasses.field(
        default="configs/sam2.1/sam2.1_hiera_s.yaml",
        metadata={"help": "the sam2 package's model config matching the checkpoint"},
    )
    device: str = dataclasses.field(default="cpu", metadata={"help": "torch device"})
    motion: MotionMasksConfig = dataclasses.field(
        default_factory=MotionMasksConfig,
        metadata={"help": "motion masks used as the prompt when no ground truth is given"},
    )


class SAM2Masks:
    """``sam2`` source: SAM 2 tracking from a one-frame mask prompt (see module docstring)."""

    name = "sam2"
    config_class: ClassVar[type] = SAM2MasksConfig

    def __init__(self, cfg: SAM2MasksConfig) -> None:
        if not Path(cfg.checkpoint).is_file():
            raise FileNotFoundError(
                f"SAM 2 checkpoint {cfg.checkpoint!r} does not exist; download one of the SAM 2 "
                "checkpoints yourself and pass its path (checkpoint=...), or use the 'motion' "
                "mask source, which needs no weights"
            )
        self.cfg = cfg
        require("sam2")  # an ImportError that names the extra: vap-env[sam2]
        build = importlib.import_module("sam2.build_sam")
        self._predictor = build.build_sam2_video_predictor(
            cfg.model_config, cfg.checkpoint, device=cfg.device
        )

    def _prompt(
        self, video: np.ndarray, ground_truth: np.ndarray | None
    ) -> tuple[int, np.ndarray] | None:
        """(frame index, (H, W) bool mask) to prompt with, or None if nothing to track."""
        if ground_truth is not None and ground_truth[0].any():
            return 0, ground_truth[0]
        motion = MotionMasks(self.cfg.motion).masks(video)
        nonempty = np.flatnonzero(motion.reshape(len(motion), -1).any(axis=1))
        return (int(nonempty[0]), motion[nonempty[0]]) if len(nonempty) else None

    def masks(
        self,
        video: np.ndarray,
        reference: np.ndarray | None = None,
        ground_truth: np.ndarray | None = None,
    ) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, H, W) bool, tracked forward and backward from the prompt."""
        video = _check_video(video)
        if ground_truth is not None:
            ground_truth = _check_masks(ground_truth, video.shape[:3])
        out = np.zeros(video.shape[:3], dtype=bool)
        prompt = self._prompt(video, ground_truth)
        if prompt is None:
            return out
        frame_idx, mask = prompt
        # One object per connected component, so the gripper and the object are tracked apart.
        n_comp, labels = cv2.connectedComponents(mask.astype(np.uint8))
        with tempfile.TemporaryDirectory() as frames_dir, torch.inference_mode():
            # The predictor reads a directory of JPEG frames named by their index.
            for t, frame in enumerate(video):
                cv2.imwrite(f"{frames_dir}/{t:05d}.jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            state = self._predictor.init_state(video_path=frames_dir)
            for obj in range(1, n_comp):
                self._predictor.add_new_mask(state, frame_idx, obj, labels == obj)
            for reverse in (False, True):
                for t, _, logits in self._predictor.propagate_in_video(state, reverse=reverse):
                    out[t] |= (logits > 0).any(dim=0).reshape(out.shape[1:]).cpu().numpy()
        return out


# ---------------------------------------------------------------------------------------------

MASK_SOURCES: dict[str, type] = {"motion": MotionMasks, "sim": SimMasks, "sam2": SAM2Masks}


def available_mask_sources() -> list[str]:
    """Names accepted by ``make_mask_source``."""
    return sorted(MASK_SOURCES)


def make_mask_source(name: str, **config: Any) -> MaskSource:
    """Build a registered mask source from its name and config fields.

    Example: ``make_mask_source("motion", threshold=30)``,
    ``make_mask_source("sam2", checkpoint="sam2.1_hiera_small.pt")``.
    """
    if name not in MASK_SOURCES:
        raise KeyError(
            f"unknown mask source {name!r}; available: {available_mask_sources()}."
            + did_you_mean(name, available_mask_sources())
        )
    cls = MASK_SOURCES[name]
    return cls(from_dict(cls.config_class, config, where=f"{name} mask source"))


# One line per source for the --mask-source help of the commands that score ST-IoU.
MASK_SOURCE_HELP = (
    "ST-IoU mask source: sim (synthetic ground truth + colour transfer; needs a vap-env data synth "
    "dataset), motion (change from the first frame; any video, no weights), sam2 (SAM 2 tracking; "
    "needs the vap-env[sam2] extra and --sam2-checkpoint)"
)
SAM2_CHECKPOINT_HELP = (
    "SAM 2 checkpoint (.pt) of --mask-source sam2, required with it (nothing is downloaded)"
)
SAM2_CONFIG_HELP = (
    f"sam2 package model config matching --sam2-checkpoint (None: {SAM2MasksConfig.model_config})"
)


def mask_source_config(
    name: str,
    *,
    sam2_checkpoint: str | None = None,
    sam2_config: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """The config fields ``make_mask_source(name, **fields)`` takes from a command's options.

    Checks the options without building anything, so a command can call it while parsing its
    arguments: an unknown ``name``, ``sam2`` without a checkpoint and a ``sam2_*`` option given
    with another source are errors that name the option. ``device`` (the command's torch device)
    goes to the sources that run a network (``sam2``); the others ignore it.

    Raises:
        KeyError: ``name`` is not a registered source.
        ValueError: ``sam2`` without ``sam2_checkpoint``, or ``sam2_*`` options with another source.
    """
    if name not in MASK_SOURCES:
        raise KeyError(
            f"unknown mask source {name!r} (--mask-source); available: "
            f"{available_mask_sources()}.{did_you_mean(name, available_mask_sources())}"
        )
    if name != "sam2":
        given = [
            flag
            for flag, value in (
                ("--sam2-checkpoint", sam2_checkpoint),
                ("--sam2-config", sam2_config),
            )
            if value is not None
        ]
        if given:
            raise ValueError(
                f"{' and '.join(given)} only {'apply' if len(given) > 1 else 'applies'} to "
                f"--mask-source sam2, not {name!r}: drop {'them' if len(given) > 1 else 'it'} or "
                "pass --mask-source sam2"
            )
        return {}
    if not sam2_checkpoint:
        raise ValueError(
            "--mask-source sam2 needs --sam2-checkpoint PATH (sam2_checkpoint): a SAM 2 checkpoint "
            "(.pt, e.g. sam2.1_hiera_small.pt) you downloaded yourself; or use --mask-source "
            "motion, which needs no weights"
        )
    fields: dict[str, Any] = {"checkpoint": sam2_checkpoint}
    if sam2_config is not None:
        fields["model_config"] = sam2_config
    if device is not None:
        fields["device"] = device
    return fields


def video_st_iou(
    generated: np.ndarray,
    reference: np.ndarray,
    source: MaskSource,
    *,
    ground_truth: np.ndarray | None = None,
    if_empty: float = float("nan"),
) -> MetricResult:
    """ST-IoU of one generated video against its reference, masks from ``source``.

    Args:
        generated: (T, H, W, 3) uint8.
        reference: (T, H, W, 3) uint8, the recorded video of the same T frames.
        source: a mask source (``make_mask_source``).
        ground_truth: (T, H, W) bool, true masks of ``reference`` (synthetic episodes: the
            action-relevant region is ``gt.gripper_masks | gt.object_masks``).
        if_empty: see ``benchmarks.metrics.st_iou``.

    Returns:
        ``MetricResult(name="st_iou", n=1, mask_source=source.name)``.
    """
    generated = _check_video(generated, "generated")
    reference = _check_video(reference, "reference")
    if generated.shape != reference.shape:
        raise ValueError(
            f"generated {generated.shape} and reference {reference.shape} differ; compare the "
            "same frames at the same resolution"
        )
    m_ref = source.masks(reference, None, ground_truth)
    m_gen = source.masks(generated, reference, ground_truth)
    return MetricResult("st_iou", st_iou(m_gen, m_ref, if_empty=if_empty), 1, source.name)
