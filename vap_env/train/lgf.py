"""Local Gram Flow (LGF) structure loss of "Structure From Tracking" (SAM2VideoX, Fei et al. 2025).

A frozen video-tracker *teacher* sees the clean clip and gives per-frame feature maps. The LGF of a
feature video ``f`` (unit-normalised features, shape (T, D, h, w)) is, for every token ``i`` of frame
``t`` and every offset ``d`` of a ``window x window`` neighbourhood,

    P_t(i, d) = softmax_d( <f_t[i], f_{t+1}[i + d]> / temperature )

i.e. where in the next frame each token "flows" to, as a distribution over its local neighbourhood
(offsets falling outside the frame are masked out). The *student* is an intermediate layer of the
diffusion transformer, projected into the teacher's feature space by a small MLP
(``LGFProjector``); its flow is computed the same way and trained with ``KL(teacher || student)``,
averaged over tokens, frame pairs and batch. Only relations between neighbouring tokens are matched,
not the features themselves, so the student keeps its own feature space.

Teacher forward/backward fusion. A tracker is causal (SAM2's memory only looks at the past), so the
teacher is run twice: on the clip (forward flow ``F_t(i -> i+d)`` from frame t to t+1) and on the
time-reversed clip, whose features give a backward flow ``B_t(j -> j+d)`` from frame t+1 to frame t.
The backward flow is transposed into forward indexing, ``B^T_t(i, d) = B_t(i + d, -d)`` (how much
token i+d of frame t+1 points back at token i), and the two are fused *in flow space* as the
renormalised average ``(F + B^T) / 2`` over each token's valid window. Fusing flows rather than
features follows the paper's observation that averaging the two feature sets creates cross terms
that are neither direction's structure.

Teachers are pluggable through ``TEACHERS`` (name -> builder): ``sam2`` wraps SAM2 (``pip install
'vap-env[sam2]'`` plus a user-supplied checkpoint) and uses its memory-conditioned features, tracking
from a first-frame mask prompt (``track_in_reverse`` for the backward run); ``random`` is a tiny
seeded random conv net with a causal running-average memory, for tests and smoke runs (it has no
semantics; it exercises every code path, including the direction dependence).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vap_env._optional import require
from vap_env.config import did_you_mean


@dataclass(frozen=True)
class LGFConfig:
    """Settings of the Local Gram Flow structure loss (off by default: ``weight: 0``)."""

    weight: float = field(default=0.0, metadata={"help": "loss weight; 0 disables the LGF loss"})
    teacher: str = field(default="random", metadata={"help": "teacher name: 'sam2' or 'random'"})
    layer: int = field(
        default=-1,
        metadata={"help": "transformer block whose output is projected (negative: from the end)"},
    )
    window: int = field(default=7, metadata={"help": "odd side of the local window, in tokens"})
    temperature: float = field(default=0.1, metadata={"help": "softmax temperature of the flow"})
    projector_hidden: int = field(default=256, metadata={"help": "hidden width of the MLP"})
    random_dim: int = field(default=32, metadata={"help": "feature size of the random teacher"})
    random_seed: int = field(default=0, metadata={"help": "init seed of the random teacher"})
    sam2_checkpoint: str | None = field(
        default=None,
        metadata={"help": "path of a SAM2 checkpoint (.pt), e.g. sam2.1_hiera_tiny.pt"},
    )
    sam2_config: str = field(
        default="configs/sam2.1/sam2.1_hiera_t.yaml",
        metadata={"help": "SAM2 hydra config name matching the checkpoint"},
    )

    def __post_init__(self) -> None:
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"LGF window={self.window} must be a positive odd number (e.g. 7)")
        if self.temperature <= 0:
            raise ValueError(f"LGF temperature={self.temperature} must be > 0 (e.g. 0.1)")
        if self.weight < 0:
            raise ValueError(f"LGF weight={self.weight} must be >= 0 (0 disables the loss)")


# --------------------------------------------------------------------------------------- flows


def _window_offsets(window: int) -> list[tuple[int, int]]:
    r = window // 2
    # Same order as F.unfold's kernel positions: row-major over (dy, dx).
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]


def window_valid_mask(
    height: int, width: int, window: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Which window offsets of each token fall inside the frame.

    Returns: (N, W2) bool with N = height * width tokens (row-major), W2 = window**2 offsets.
    """
    ones = torch.ones(1, 1, height, width, device=device)
    valid = F.unfold(ones, window, padding=window // 2)  # (1, W2, N)
    return valid[0].t() > 0.5


def local_gram_flow_logits(features: torch.Tensor, window: int, temperature: float) -> torch.Tensor:
    """Logits of the forward local Gram flow of a feature video.

    Args:
        features: (B, T, D, h, w) feature maps; they are L2-normalised over D here, so the logits are
            cosine similarities / temperature.
        window: odd window side; temperature: softmax temperature.
    Returns:
        (B, T-1, N, W2) logits, ``-inf`` where the offset leaves the frame (N = h*w, W2 = window**2).
    """
    if features.ndim != 5:
        raise ValueError(f"features must be (B, T, D, h, w), got shape {tuple(features.shape)}")
    b, t, d, h, w = features.shape
    if t < 2:
        raise ValueError(f"a flow needs at least 2 frames, got T={t}")
    f = F.normalize(features.float(), dim=2)
    cur = f[:, :-1].reshape(b * (t - 1), d, h * w)  # (BT', D, N)
    nxt = F.unfold(f[:, 1:].reshape(b * (t - 1), d, h, w), window, padding=window // 2)
    nxt = nxt.view(b * (t - 1), d, window * window, h * w)  # (BT', D, W2, N)
    logits = torch.einsum("bdn,bdkn->bnk", cur, nxt) / temperature  # (BT', N, W2)
    valid = window_valid_mask(h, w, window, device=features.device)
    logits = logits.masked_fill(~valid, float("-inf"))
    return logits.view(b, t - 1, h * w, window * window)


def local_gram_flow(features: torch.Tensor, window: int, temperature: float) -> torch.Tensor:
    """Forward local Gram flow: (B, T, D, h, w) -> (B, T-1, N, W2) probabilities (0 off-frame)."""
    return local_gram_flow_logits(features, window, temperature).softmax(dim=-1)


def transpose_flow(backward: torch.Tensor, height: int, width: int, window: int) -> torch.Tensor:
    """Re-index a backward flow (frame t+1 -> t) as a forward one (frame t -> t+1).

    Args:
        backward: (B, T-1, N, W2) where ``backward[:, t, j, d]`` is the probability that token j of
            frame t+1 flows to token j+d of frame t.
    Returns:
        (B, T-1, N, W2) with ``out[:, t, i, d] = backward[:, t, i+d, -d]`` (0 where i+d is off-frame).
        Rows are not normalised (see ``fuse_flows``).
    """
    b, t, n, k = backward.shape
    if n != height * width or k != window * window:
        raise ValueError(
            f"backward flow shape {tuple(backward.shape)} does not match a {height}x{width} grid "
            f"with window {window} (expected N={height * width}, W2={window * window})"
        )
    grid = backward.view(b, t, height, width, k)
    offsets = _window_offsets(window)
    index = {o: i for i, o in enumerate(offsets)}
    out = torch.zeros_like(grid)
    for k_idx, (dy, dx) in enumerate(offsets):
        src = grid[..., index[(-dy, -dx)]]  # (B, T, h, w): flow of token j towards j - d
        # out[y, x] = src[y + dy, x + dx] where inside the frame
        ys, ye = max(0, -dy), min(height, height - dy)
        xs, xe = max(0, -dx), min(width, width - dx)
        if ys < ye and xs < xe:
            out[:, :, ys:ye, xs:xe, k_idx] = src[:, :, ys + dy : ye + dy, xs + dx : xe + dx]
    return out.view(b, t, n, k)


def fuse_flows(
    forward: torch.Tensor,  # (B, T-1, N, W2)
    backward_transposed: torch.Tensor,  # (B, T-1, N, W2), the backward flow in forward indexing
) -> torch.Tensor:  # -> (B, T-1, N, W2)
    """Average two flows in forward indexing and renormalise each token's window to sum to 1."""
    fused = 0.5 * (forward + backward_transposed)
    return fused / fused.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def lgf_kl(teacher_flow: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per token, averaged over tokens, frame pairs and batch.

    Args:
        teacher_flow: (B, T-1, N, W2) probabilities (0 on off-frame offsets).
        student_logits: (B, T-1, N, W2) logits with ``-inf`` on off-frame offsets.
    Returns: scalar tensor (>= 0, exactly 0 when the two flows are equal).
    """
    if teacher_flow.shape != student_logits.shape:
        raise ValueError(
            f"teacher flow {tuple(teacher_flow.shape)} and student logits "
            f"{tuple(student_logits.shape)} must have the same shape"
        )
    log_q = student_logits.float().log_softmax(dim=-1)
    p = teacher_flow.float()
    valid = torch.isfinite(log_q)
    # where p == 0 the term is 0 (xlogy); off-frame entries are excluded before -inf can make NaNs
    terms = torch.where(valid, torch.xlogy(p, p) - p * log_q.masked_fill(~valid, 0.0), 0.0)
    return terms.sum(dim=-1).mean()


# ------------------------------------------------------------------------------------ teachers


class Teacher(nn.Module):
    """A frozen, causal video feature extractor.

    ``forward(video (B, T, 3, H, W) in [-1, 1], prompt_masks (B, T, H, W) bool | None)`` returns
    per-frame features (B, T, D, h, w) computed in the given time order (frame t sees frames <= t);
    ``prompt_masks[:, 0]`` is the first frame's object prompt for trackers that need one.
    """

    feature_dim: int


class RandomConvTeacher(Teacher):
    """Tiny seeded random conv features with a causal running average (a stand-in tracker memory).

    Only for tests and smoke runs: the features mean nothing, but they depend on the direction of
    time as a real tracker's do, so the forward/backward fusion is exercised.
    """

    def __init__(self, feature_dim: int = 32, seed: int = 0, memory: float = 0.5) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.memory = memory
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(32, feature_dim, 3, stride=2, padding=1),
        )
        g = torch.Generator().manual_seed(seed)
        for m in self.net:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, generator=g)
                nn.init.zeros_(m.bias)
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def forward(
        self, video: torch.Tensor, prompt_masks: torch.Tensor | None = None
    ) -> torch.Tensor:  # (B, T, 3, H, W) -> (B, T, D, H/8, W/8)
        b, t = video.shape[:2]
        x = self.net(video.flatten(0, 1).float()).unflatten(0, (b, t))
        out, state = [], torch.zeros_like(x[:, 0])
        for i in range(t):
            state = self.memory * state + (1.0 - self.memory) * x[:, i]
            out.append(state)
        return torch.stack(out, dim=1)


class SAM2Teacher(Teacher):
    """SAM2's memory-conditioned features, tracking a first-frame mask prompt through the clip.

    Needs ``pip install 'vap-env[sam2]'`` and a checkpoint from the SAM2 release (e.g.
    ``sam2.1_hiera_tiny.pt``) with its matching config name. Frames are resized to SAM2's input size
    (1024) and ImageNet-normalised; the features are the image-encoder top level after memory
    attention (256 channels at stride 16), i.e. what SAM2's mask decoder reads while tracking. Uses
    ``SAM2Base._prepare_memory_conditioned_features`` and ``track_step``, stable across the sam2
    1.x releases.
    """

    _MEAN = (0.485, 0.456, 0.406)
    _STD = (0.229, 0.224, 0.225)

    def __init__(
        self, checkpoint: str | None, config: str, device: str | torch.device = "cpu"
    ) -> None:
        super().__init__()
        require("sam2")  # raises naming the vap-env[sam2] extra when missing
        build_sam = importlib.import_module("sam2.build_sam")
        if not checkpoint:
            raise ValueError(
                "the SAM2 teacher needs a checkpoint: set lgf.sam2_checkpoint to a SAM2 .pt file "
                "(e.g. sam2.1_hiera_tiny.pt from the SAM2 release) and lgf.sam2_config to its "
                "config name, or use lgf.teacher: random"
            )
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(
                f"SAM2 checkpoint {checkpoint!r} does not exist: download it from the SAM2 release "
                "(e.g. sam2.1_hiera_tiny.pt) and point lgf.sam2_checkpoint at it"
            )
        self.model = build_sam.build_sam2(config, checkpoint, device=str(device), mode="eval")
        self.model.requires_grad_(False)
        self.feature_dim = int(self.model.hidden_dim)
        self.register_buffer("mean", torch.tensor(self._MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self._STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(
        self, video: torch.Tensor, prompt_masks: torch.Tensor | None = None
    ) -> torch.Tensor:  # (B, T, 3, H, W) -> (B, T, 256, S/16, S/16)
        m = self.model
        b, t, _, h, w = video.shape
        size = int(m.image_size)
        if prompt_masks is None:
            # No object given: track the whole frame (memory still carries the scene's structure).
            prompt_masks = torch.ones(b, t, h, w, dtype=torch.bool, device=video.device)
        out_dict: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        feats = []
        for i in range(t):
            img = F.interpolate((video[:, i].float() + 1) / 2, size=(size, size), mode="bilinear")
            img = (img - self.mean) / self.std
            backbone_out = m.forward_image(img)
            _, vis, pos, sizes = m._prepare_backbone_features(backbone_out)
            is_init = i == 0
            pix = m._prepare_memory_conditioned_features(
                frame_idx=i,
                is_init_cond_frame=is_init,
                current_vision_feats=vis[-1:],
                current_vision_pos_embeds=pos[-1:],
                feat_sizes=sizes[-1:],
                output_dict=out_dict,
                num_frames=t,
            )
            feats.append(pix)
            mask = None
            if is_init:
                mask = F.interpolate(prompt_masks[:, :1].float(), size=(size, size)) > 0.5
            step = m.track_step(
                frame_idx=i,
                is_init_cond_frame=is_init,
                current_vision_feats=vis,
                current_vision_pos_embeds=pos,
                feat_sizes=sizes,
                point_inputs=None,
                mask_inputs=mask,
                output_dict=out_dict,
                num_frames=t,
            )
            key = "cond_frame_outputs" if is_init else "non_cond_frame_outputs"
            out_dict[key][i] = step
        return torch.stack(feats, dim=1)


def _build_random(cfg: LGFConfig, device: str | torch.device) -> Teacher:
    return RandomConvTeacher(cfg.random_dim, seed=cfg.random_seed).to(device)


def _build_sam2(cfg: LGFConfig, device: str | torch.device) -> Teacher:
    return SAM2Teacher(cfg.sam2_checkpoint, cfg.sam2_config, device=device)


TEACHERS: dict[str, Callable[[LGFConfig, str | torch.device], Teacher]] = {
    "random": _build_random,
    "sam2": _build_sam2,
}


def build_teacher(cfg: LGFConfig, device: str | torch.device = "cpu") -> Teacher:
    """Build the teacher named by ``cfg.teacher`` (see ``TEACHERS``)."""
    if cfg.teacher not in TEACHERS:
        raise KeyError(
            f"unknown LGF teacher {cfg.teacher!r}; available: {sorted(TEACHERS)}."
            + did_you_mean(cfg.teacher, sorted(TEACHERS))
        )
    return TEACHERS[cfg.teacher](cfg, device)


def bidirectional_teacher_flow(
    teacher: Teacher,
    video: torch.Tensor,
    frame_index: list[int],
    grid: tuple[int, int],
    window: int,
    temperature: float,
    prompt_masks: torch.Tensor | None = None,
) -> torch.Tensor:
    """The fused (forward + transposed backward) teacher flow at the student's token grid.

    Args:
        video: (B, F, 3, H, W) clean clip in [-1, 1].
        frame_index: which of the F frames each of the student's T token frames corresponds to.
        grid: (h, w) token grid of the student; teacher maps are area-resampled to it.
        prompt_masks: optional (B, F, H, W) object masks; the teacher reads the first of the given
            time order (frame 0 forward, frame F-1 backward).
    Returns: (B, T-1, h*w, window**2) probabilities.
    """

    def at_tokens(feats: torch.Tensor) -> torch.Tensor:  # (B, F, D, h', w') -> (B, T, D, h, w)
        feats = feats[:, frame_index]
        b, t = feats.shape[:2]
        pooled = F.adaptive_avg_pool2d(feats.flatten(0, 1).float(), grid)
        return pooled.unflatten(0, (b, t))

    with torch.no_grad():
        fwd = at_tokens(teacher(video, prompt_masks))
        rev_masks = None if prompt_masks is None else prompt_masks.flip(1)
        bwd = at_tokens(teacher(video.flip(1), rev_masks).flip(1))
        forward = local_gram_flow(fwd, window, temperature)
        # backward flow: from frame t+1 to frame t, i.e. the forward flow of the reversed sequence
        backward = local_gram_flow(bwd.flip(1), window, temperature).flip(1)
        return fuse_flows(forward, transpose_flow(backward, grid[0], grid[1], window))


class LGFProjector(nn.Module):
    """Two-layer MLP from the transformer's hidden size to the teacher's feature size."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (..., in_dim) -> (..., out_dim)
        return self.net(tokens)


class LGFLoss(nn.Module):
    """The LGF loss: owns the trainable projector and the frozen teacher.

    ``forward(hidden (B, T*h*w, D_model), grid (T, h, w), video (B, F, 3, H, W), frame_index)``
    returns the scalar KL(teacher || student).
    """

    def __init__(self, cfg: LGFConfig, model_dim: int, teacher: Teacher) -> None:
        super().__init__()
        self.cfg = cfg
        self.projector = LGFProjector(model_dim, teacher.feature_dim, cfg.projector_hidden)
        # Kept out of the module tree: the teacher is frozen and must not be saved, optimised or
        # wrapped by DDP together with the projector.
        self._teacher = [teacher]

    @property
    def teacher(self) -> Teacher:
        """The frozen teacher."""
        return self._teacher[0]

    def student_logits(self, hidden: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Project hidden states (B, T*h*w, D) and return their flow logits (B, T-1, h*w, W2)."""
        t, h, w = grid
        b, n, _ = hidden.shape
        if n != t * h * w:
            raise ValueError(
                f"hidden states have {n} tokens, expected T*h*w = {t}*{h}*{w} = {t * h * w}"
            )
        z = self.projector(hidden).view(b, t, h, w, -1).permute(0, 1, 4, 2, 3)
        return local_gram_flow_logits(z, self.cfg.window, self.cfg.temperature)

    def forward(
        self,
        hidden: torch.Tensor,
        grid: tuple[int, int, int],
        video: torch.Tensor,
        frame_index: list[int],
        prompt_masks: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """KL(teacher || student) of one batch, a scalar.

        Args:
            hidden: (B, T*h*w, D_model) the student's intermediate transformer tokens.
            grid: (T, h, w) their latent grid.
            video: (B, F, 3, H, W) in [-1, 1], the clean clip the teacher tracks.
            frame_index: T indices into F: the frame each latent frame is compared at.
            prompt_masks: (B, F, H, W) bool object masks for trackers that need a prompt, or None.
        """
        if len(frame_index) != grid[0]:
            raise ValueError(f"frame_index has {len(frame_index)} entries for T={grid[0]} frames")
        target = bidirectional_teacher_flow(
            self.teacher,
            video,
            frame_index,
            grid[1:],
            self.cfg.window,
            self.cfg.temperature,
            prompt_masks,
        )
        return lgf_kl(target, self.student_logits(hidden, grid))


__all__ = [
    "TEACHERS",
    "LGFConfig",
    "LGFLoss",
    "LGFProjector",
    "RandomConvTeacher",
    "SAM2Teacher",
    "Teacher",
    "bidirectional_teacher_flow",
    "build_teacher",
    "fuse_flows",
    "lgf_kl",
    "local_gram_flow",
    "local_gram_flow_logits",
    "transpose_flow",
    "window_valid_mask",
]
