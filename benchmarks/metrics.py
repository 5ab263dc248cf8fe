"""Metrics of world-model fidelity and of policy-ranking agreement, and how they are reported.

Video fidelity (generated video G vs the recorded reference R of the same T frames):

- ``st_iou``: spatio-temporal IoU of binary masks of the action-relevant region (gripper and
  manipulated object), exactly as ``ARCHITECTURE.md`` defines it:
  ``ST-IoU = sum_t |M^G_t ∩ M^R_t| / sum_t |M^G_t ∪ M^R_t|``. The masks come from a pluggable
  mask source (``benchmarks.masks``); every reported number carries the source's name.
- ``psnr`` and ``ssim`` (Gaussian-window SSIM of Wang et al. 2004), per frame, averaged over frames.
- ``frechet_distance`` between two sets of feature vectors (the FVD core; the feature extractors
  live in ``benchmarks.video_features``).

Policy-ranking agreement (success rates of the same policies in the world model and in a
reference simulator), as SimplerEnv (Li et al. 2024, ``simpler_env/utils/metrics.py``) defines it:
``pearson`` and ``mean_maximum_rank_violation`` (MMRV).

Reporting: ``MetricResult`` (value, n, mask source, bootstrap CI), ``summarize``,
``bootstrap_ci``, per-skill grouping (``group_by_skill``, ``per_skill_summary``) and a Markdown
table renderer (``skill_table_markdown``, ``markdown_table``).

Everything here works on whole arrays (NumPy, OpenCV); nothing runs inside a model's forward pass.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]


@dataclasses.dataclass(frozen=True)
class MetricResult:
    """One reported number with what is needed to read it: what, over how many, measured how."""

    name: str = dataclasses.field(metadata={"help": "metric name, e.g. 'st_iou', 'psnr'"})
    value: float = dataclasses.field(metadata={"help": "the mean (or the single value)"})
    n: int = dataclasses.field(metadata={"help": "number of values the mean is over"})
    mask_source: str | None = dataclasses.field(
        default=None, metadata={"help": "mask source of mask-based metrics (ST-IoU), else None"}
    )
    ci: tuple[float, float] | None = dataclasses.field(
        default=None, metadata={"help": "confidence interval of the mean, if computed"}
    )
    confidence: float | None = dataclasses.field(
        default=None, metadata={"help": "confidence level of ci (0.95 for a 95% interval)"}
    )
    n_excluded: int = dataclasses.field(
        default=0, metadata={"help": "values left out of the mean because they were NaN"}
    )
    ci_method: str | None = dataclasses.field(
        default=None, metadata={"help": "how ci was computed: 'bootstrap' or 'wilson'"}
    )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (NaN and inf become None: JSON has no such numbers)."""

        def num(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        return {
            "name": self.name,
            "value": num(self.value),
            "n": self.n,
            "mask_source": self.mask_source,
            "ci": None if self.ci is None else [num(self.ci[0]), num(self.ci[1])],
            "confidence": self.confidence,
            "ci_method": self.ci_method,
            "n_excluded": self.n_excluded,
        }

    def format(self, digits: int = 3) -> str:
        """``'0.604 [0.581, 0.627]'``: the value and, if present, its interval."""
        text = f"{self.value:.{digits}f}"
        if self.ci is not None:
            text += f" [{self.ci[0]:.{digits}f}, {self.ci[1]:.{digits}f}]"
        return text

    def __str__(self) -> str:
        label = self.name + (f"[{self.mask_source}]" if self.mask_source else "")
        extra = f"n={self.n}" + (f", {self.n_excluded} NaN excluded" if self.n_excluded else "")
        return f"{label} = {self.format()} ({extra})"


# ---------------------------------------------------------------------------------------------
# Video fidelity


def _as_numpy(x: ArrayLike, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{what}: expected a numpy array or torch tensor, got {type(x).__name__}")


def st_iou(
    masks_generated: ArrayLike, masks_reference: ArrayLike, *, if_empty: float = float("nan")
) -> float:
    """Spatio-temporal IoU of two mask videos: ``sum_t |G_t ∩ R_t| / sum_t |G_t ∪ R_t|``.

    Args:
        masks_generated: (T, H, W) bool, the action-relevant region in the generated video.
        masks_reference: (T, H, W) bool, the same region in the reference video.
        if_empty: the value when both mask videos are empty in every frame (the union is empty and
            the ratio undefined). The default NaN means "no evidence either way": ``summarize`` and
            ``per_skill_summary`` leave such episodes out of the mean and count them in
            ``n_excluded``. Pass 1.0 to count "nothing moved in either video" as agreement.

    Frames where only one video has mask pixels count fully against the score; empty-both frames
    add nothing to either sum, so they neither help nor hurt.
    """
    g = _as_numpy(masks_generated, "masks_generated")
    r = _as_numpy(masks_reference, "masks_reference")
    for name, m in (("masks_generated", g), ("masks_reference", r)):
        if m.dtype != np.bool_:
            raise TypeError(
                f"{name} must be a bool mask video, got dtype {m.dtype}; threshold it first "
                "(e.g. masks > 0.5)"
            )
        if m.ndim != 3:
            raise ValueError(f"{name} must have shape (T, H, W), got {m.shape}")
    if g.shape != r.shape:
        raise ValueError(
            f"mask videos differ in shape: generated {g.shape} vs reference {r.shape}; "
            "compare the same T frames at the same resolution"
        )
    union = int(np.count_nonzero(g | r))
    if union == 0:
        return float(if_empty)
    return int(np.count_nonzero(g & r)) / union


def _check_video_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.shape != y.shape:
        raise ValueError(f"videos differ in shape: {x.shape} vs {y.shape}")
    if x.ndim == 3:  # a single image (H, W, C)
        x, y = x[None], y[None]
    if x.ndim != 4:
        raise ValueError(f"expected (T, H, W, C) videos or (H, W, C) images, got shape {x.shape}")
    return x, y


def psnr(video_a: ArrayLike, video_b: ArrayLike, *, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB, computed per frame and averaged over frames.

    Args:
        video_a, video_b: (T, H, W, C) or (H, W, C), same shape; uint8 (``data_range`` 255) or
            float in ``[0, data_range]``.

    Identical frames have infinite PSNR; one such frame makes the mean infinite, which is the
    honest answer (a copy of the reference), and ``MetricResult.to_dict`` writes it as null.
    """
    a, b = _check_video_pair(_as_numpy(video_a, "video_a"), _as_numpy(video_b, "video_b"))
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = (diff**2).reshape(len(diff), -1).mean(axis=1)  # (T,)
    with np.errstate(divide="ignore"):
        per_frame = 10.0 * np.log10(data_range**2 / mse)
    return float(per_frame.mean())


# SSIM constants of Wang et al. 2004 (and of every common implementation).
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def ssim(video_a: ArrayLike, video_b: ArrayLike, *, data_range: float = 255.0) -> float:
    """Structural similarity (Gaussian window 11x11, sigma 1.5), per frame, averaged over frames.

    Computed per colour channel and averaged over channels and over the "valid" window positions
    (the border of 5 pixels whose window would leave the image is dropped, as in Wang et al.'s
    reference MATLAB code). The local statistics use ``cv2.GaussianBlur`` in float64.

    Args:
        video_a, video_b: (T, H, W, C) or (H, W, C) with H, W >= 11; uint8 or float in
            ``[0, data_range]``.
    """
    a, b = _check_video_pair(_as_numpy(video_a, "video_a"), _as_numpy(video_b, "video_b"))
    if min(a.shape[1:3]) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least 11x11 pixels, got {a.shape[1:3]}")
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    pad = _SSIM_WINDOW // 2

    def blur(img: np.ndarray) -> np.ndarray:
        out = cv2.GaussianBlur(img, (_SSIM_WINDOW, _SSIM_WINDOW), _SSIM_SIGMA)
        out = out.reshape(img.shape)  # OpenCV drops a trailing channel axis of size 1
        return out[pad:-pad, pad:-pad]

    scores = []
    for fa, fb in zip(a.astype(np.float64), b.astype(np.float64), strict=True):
        mu_a, mu_b = blur(fa), blur(fb)
        var_a = blur(fa * fa) - mu_a**2
        var_b = blur(fb * fb) - mu_b**2
        cov = blur(fa * fb) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        scores.append(float((num / den).mean()))
    return float(np.mean(scores))


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigen-decomposition)."""
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(
    mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """Fréchet distance between the Gaussians N(mu_a, cov_a) and N(mu_b, cov_b).

    ``d^2 = |mu_a - mu_b|^2 + Tr(cov_a + cov_b - 2 (cov_a cov_b)^{1/2})``.
    ``Tr((A B)^{1/2})`` equals ``Tr((A^{1/2} B A^{1/2})^{1/2})`` (the two products are similar
    matrices), and the latter is symmetric PSD, so it is computed with two symmetric
    eigen-decompositions in float64 instead of a general matrix square root (``scipy.linalg.sqrtm``,
    which needs SciPy and can return spurious imaginary parts).

    Args:
        mu_a, mu_b: (F,) means; cov_a, cov_b: (F, F) covariances.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != 2 * mu_a.shape:
        raise ValueError(
            f"inconsistent statistics: mu {mu_a.shape} / {mu_b.shape}, cov {cov_a.shape} / "
            f"{cov_b.shape}; expected (F,) means and (F, F) covariances"
        )
    sqrt_a = _sqrt_psd(cov_a)
    inner = sqrt_a @ cov_b @ sqrt_a
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)  # symmetrise away round-off
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    d2 = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)
    return max(d2, 0.0)  # round-off can push identical distributions slightly below zero


def feature_stats(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and unbiased covariance (F, F) of features (N, F), N >= 2."""
    f = _as_numpy(features, "features").astype(np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (N, F) with N >= 2, got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike) -> float:
    """Fréchet distance between two sets of feature vectors, (N, F) and (M, F).

    With fewer samples than feature dimensions the covariances are rank-deficient and the
    distance is biased upwards; report n with it (``benchmarks.video_features.frechet_video_distance``
    does).
    """
    mu_a, cov_a = feature_stats(features_a)
    mu_b, cov_b = feature_stats(features_b)
    return frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b)


# ---------------------------------------------------------------------------------------------
# Statistics of a set of values


def _as_values(values: ArrayLike | Iterable[float], what: str = "values") -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    v = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, np.float64)
    if v.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of numbers, got shape {v.shape}")
    return v


def bootstrap_ci(
    values: ArrayLike | Iterable[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean (seeded, so reproducible).

    Args:
        values: (n,) finite numbers, n >= 1 (one value gives the degenerate interval (v, v)).
        confidence: e.g. 0.95 for a 95% interval.
        n_resamples: bootstrap resamples; 2000 keeps the interval ends stable to ~3 decimals.
        seed: seed of the resampling generator.
    """
    v = _as_values(values)
    if len(v) == 0:
        raise ValueError("bootstrap_ci needs at least one value, got an empty sequence")
    if not np.all(np.isfinite(v)):
        raise ValueError(
            f"bootstrap_ci got non-finite values {v[~np.isfinite(v)][:5].tolist()}; drop them "
            "first (summarize() does and reports how many)"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    # Sorted first: resampling indices from a seeded generator would otherwise tie the interval
    # to the order of the values (the same episodes grouped by skill gave ends +/-0.002 apart).
    v = np.sort(v)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_resamples, len(v)))
    means = v[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarize(
    values: ArrayLike | Iterable[float],
    *,
    name: str,
    mask_source: str | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> MetricResult:
    """Mean of ``values`` with its bootstrap interval; NaNs are left out and counted.

    +/-inf values (e.g. the PSNR of an exact copy) are kept: the mean is then infinite and the
    interval is not computed; nor is it for a single value.
    """
    v = _as_values(values)
    nan = np.isnan(v)
    kept = v[~nan]
    n_excluded = int(nan.sum())
    if len(kept) == 0:
        return MetricResult(name, float("nan"), 0, mask_source, None, None, n_excluded)
    ci = None
    # One value has no spread to resample: print it without a (degenerate) interval.
    if len(kept) >= 2 and np.all(np.isfinite(kept)):
        ci = bootstrap_ci(kept, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return MetricResult(
        name,
        float(kept.mean()),
        len(kept),
        mask_source,
        ci,
        confidence if ci else None,
        n_excluded,
        "bootstrap" if ci else None,
    )


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate ``successes / n``.

    A percentile bootstrap of 0/1 outcomes cannot reach past the observed rate (10 of 10 gives
    [1, 1]); Wilson's interval can (10 of 10: [0.72, 1.00]) and stays inside [0, 1].
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got successes={successes}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # exact at the ends: rounding left 0 of n at 3e-17, an interval excluding the observed rate
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def summarize_rate(
    outcomes: Iterable[bool], *, name: str, confidence: float = 0.95
) -> MetricResult:
    """Success rate of (n,) boolean outcomes with its Wilson interval (see ``wilson_interval``)."""
    v = [bool(x) for x in outcomes]
    if not v:
        return MetricResult(name, float("nan"), 0)
    ci = wilson_interval(sum(v), len(v), confidence=confidence)
    return MetricResult(name, sum(v) / len(v), len(v), None, ci, confidence, 0, "wilson")


def pearson(x: ArrayLike | Iterable[float], y: ArrayLike | Iterable[float]) -> float:
    """Pearson correlation of two equally long sequences, with SimplerEnv's edge cases.

    As in SimplerEnv's ``pearson_correlation``: if the two centred sequences are identical (this
    includes two constant sequences) the correlation is 1; otherwise a constant sequence gives 0
    (SimplerEnv gets there through a 1e-8 in the denominator; here it is explicit).
    """
    a, b = _as_values(x, "x"), _as_values(y, "y")
    if a.shape != b.shape or len(a) < 2:
        raise ValueError(
            f"pearson needs two sequences of equal length >= 2, got {a.shape} / {b.shape}"
        )
    a, b = a - a.mean(), b - b.mean()
    if np.all(a == b):
        return 1.0
    den = math.sqrt(float((a**2).sum() * (b**2).sum()))
    return 0.0 if den == 0.0 else float((a * b).sum() / den)


def mean_maximum_rank_violation(
    *, real: ArrayLike | Iterable[float], sim: ArrayLike | Iterable[float]
) -> float:
    """MMRV of SimplerEnv: how badly ``sim`` mis-orders the policies that ``real`` ranks.

    For each policy i, its rank violation is the largest ``|real_i - real_j|`` over the policies j
    whose order relative to i differs between ``sim`` and ``real`` (``sim_i > sim_j`` is not the
    same as ``real_i > real_j``; a tie on one side and not on the other counts), or 0 if none
    does. MMRV is the mean over i. It is in units of the real success rate: 0 means the simulator
    ranks every pair like reality; a large value means it swaps policies whose real performance
    differs a lot. Keyword-only, since the violation magnitude is measured on ``real``.

    Args:
        real: (n,) success rates in the reference (the real robot, or our ground-truth simulator).
        sim: (n,) success rates of the same policies in the evaluator being judged.
    """
    r, s = _as_values(real, "real"), _as_values(sim, "sim")
    if r.shape != s.shape or len(r) < 1:
        raise ValueError(
            f"real and sim must be equally long and non-empty, got {r.shape} / {s.shape}"
        )
    disagree = (s[:, None] > s[None, :]) != (r[:, None] > r[None, :])  # (n, n)
    gap = np.abs(r[:, None] - r[None, :])
    return float(np.where(disagree, gap, 0.0).max(axis=1).mean())


# ---------------------------------------------------------------------------------------------
# Per-skill tables

OVERALL = "all"


def group_by_skill(
    records: Iterable[Mapping[str, Any]], metric: str, *, skill_key: str = "skill"
) -> dict[str, list[float]]:
    """``{skill: [record[metric], ...]}`` over records (one per episode), skills sorted by name.

    Raises KeyError naming the record when it lacks ``skill_key`` or ``metric``.
    """
    groups: dict[str, list[float]] = {}
    for i, rec in enumerate(records):
        for key in (skill_key, metric):
            if key not in rec:
                raise KeyError(f"record {i} has no {key!r} (keys: {sorted(rec)})")
        groups.setdefault(str(rec[skill_key]), []).append(float(rec[metric]))
    return dict(sorted(groups.items()))


def per_skill_summary(
    records: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    *,
    skill_key: str = "skill",
    mask_sources: Mapping[str, str] | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    overall: bool = True,
) -> dict[str, dict[str, MetricResult]]:
    """``{skill: {metric: MetricResult}}``: mean, bootstrap CI and n of each metric per skill.

    Args:
        records: one mapping per episode, e.g. ``{"skill": "pick", "st_iou": 0.61, "psnr": 24.0}``.
        metrics: the metric keys to summarise.
        mask_sources: ``{metric: mask source}`` for mask-based metrics (e.g. ``{"st_iou": "motion"}``).
        overall: also add a row ``"all"`` over every record.
    """
    mask_sources = dict(mask_sources or {})
    unknown = sorted(set(mask_sources) - set(metrics))
    if unknown:
        raise KeyError(
            f"mask_sources names metrics {unknown} that are not in metrics={list(metrics)}"
        )
    table: dict[str, dict[str, MetricResult]] = {}
    for metric in metrics:
        groups = group_by_skill(records, metric, skill_key=skill_key)
        if overall:
            groups[OVERALL] = [v for vals in groups.values() for v in vals]
        for skill, vals in groups.items():
            table.setdefault(skill, {})[metric] = summarize(
                vals,
                name=metric,
                mask_source=mask_sources.get(metric),
                confidence=confidence,
                seed=seed,
            )
    return table


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats with 3 decimals, other cells via ``str``."""
    if any(len(r) != len(header) for r in rows):
        bad = next(r for r in rows if len(r) != len(header))
        raise ValueError(f"row {list(bad)} has {len(bad)} cells, header has {len(header)}")

    def cell(x: Any) -> str:
        return f"{x:.3f}" if isinstance(x, float) else str(x).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, header)) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def skill_table_markdown(
    summary: Mapping[str, Mapping[str, MetricResult]], metrics: Sequence[str] | None = None
) -> str:
    """Render ``per_skill_summary`` output: one row per skill, ``n`` and one column per metric.

    A column header carries the mask source (``st_iou [motion]``) and the interval level; a cell
    notes its own n when NaNs were excluded from it.
    """
    if not summary:
        raise ValueError("empty summary: no records were summarised")
    first = next(iter(summary.values()))
    metrics = list(metrics or first)
    header = ["skill", "n"]
    for m in metrics:
        source = first[m].mask_source
        level = next((r[m].confidence for r in summary.values() if r[m].confidence), None)
        label = m + (f" [{source}]" if source else "")
        header.append(label + (f" ({round(level * 100)}% CI)" if level else ""))
    rows = []
    for skill, results in summary.items():
        n = max(results[m].n + results[m].n_excluded for m in metrics)
        cells: list[Any] = [skill, n]
        for m in metrics:
            r = results[m]
            text = r.format()
            if r.n_excluded:
                text += f" (n={r.n})"
            cells.append(text)
        rows.append(cells)
    return markdown_table(header, rows)
