"""Offline policy evaluation: does the world model rank policies the way the real scene does?

``vap-env bench ope --scenes 20 --json ope.json --out-dir runs/ope``

Several policies (by default the scripted skill with increasing action noise, and uniform random
actions) start from the same N initial states (synthetic scenes, seeded, skills cycled) twice:

- in the **world-model env** (``VAPVectorEnv``: one batched world-model call per step for all
  policies), which only sees the start frame and paints every later frame;
- in the **ground-truth simulator** (``benchmarks.ground_truth_sim.GroundTruthSim``: the pybullet
  scene the synthetic data comes from, executing the same action chunks through the env's own
  kinematics, IK and gripper convention, with the data generator's grasping rules).

Both run closed loop: the policy sees each side's own observation (the scripted policy re-anchors
on the observed TCP at every chunk). A success detector judges the last frame of both videos the
same way (the manipulated object's colour mask, prototypes from the shared first frame, against
the skill's goal region rendered by the simulator; see ``ground_truth_sim``). Per policy this gives
a success rate in the world model and in the ground truth, and across policies the agreement of
the two, as SimplerEnv (Li et al. 2024) measures a simulator against the real robot:

- **Pearson r** of the per-policy success rates: 1 = the world model's rates are an affine
  function of the true ones (a constant offset is allowed: it is the *ordering and spacing* that
  count).
- **MMRV** (mean maximum rank violation, ``benchmarks.metrics``), in units of success rate: for
  each policy, the largest true-success gap to another policy that the world model orders the
  wrong way round, averaged over policies. 0 = every pair is ordered right; 0.3 = on average, a
  policy is confused with one whose true success differs by 30 points.

What the numbers mean for you. Before trusting the world model to pick between your policies,
read three things. (1) Detector accuracy on the ground-truth videos (the detector against the
simulator's true outcome): the ceiling of everything else; a low value means the numbers measure
the detector, not the world model. (2) Pearson near 1 and MMRV near 0 on a set of policies whose
true success rates are spread out: the model then orders policies like reality, so a policy it
ranks first is truly among the best, and differences in its success rates are real differences;
an MMRV of m says "do not trust a gap smaller than about m". (3) The world-model success rates
themselves: they can be biased (a model that hallucinates grasps inflates every policy), which
Pearson and MMRV forgive but an absolute threshold ("ship at 80 %") does not. The policies here
read proprioception only, so their actions differ between the two sides only through the state
they reach; a policy that reads images also sees the model's mistakes, so its agreement can be
lower. With a few scenes the rates are coarse (n scenes gives steps of 1/n): look at the Wilson
intervals before reading a ranking.

Fair comparison: in a scene every policy meets the same world-model noise (each env slot is reset
with the scene's seed: common random numbers), and a stochastic policy draws from a seed of (scene,
policy text) on both sides, so a policy's numbers do not depend on the other policies listed.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.ground_truth_sim import DetectorConfig
from vap_env.data.synth.scripted import SKILL_NAMES
from vap_env.strict_json import write_json

__all__ = [
    "POLICY_KINDS",
    "Config",
    "PolicyContext",
    "agreement_notes",
    "format_report",
    "main",
    "make_ope_policy",
    "parse_policy",
    "policy_seed",
    "rollout_ground_truth",
    "run",
]

DEFAULT_POLICIES = ("scripted:0", "scripted:0.01", "scripted:0.02", "scripted:0.04", "random")


@dataclass(frozen=True)
class PolicyContext:
    """What a policy needs to know about the env it acts in."""

    chunk_size: int  # K, the env's chunk_frames
    num_frames: int  # frames of the episode (1 + chunks * K): the scripted skill's duration
    action_mode: str  # the env's action mode
    action_space: Any  # the env's (single) Box action space (K, D)


def _scripted_noise(arg: str | None) -> float:
    """The action-noise std of ``"scripted:<x>"`` (0 when not given)."""
    try:
        noise = float(arg) if arg else 0.0
    except ValueError:
        raise ValueError(
            f"policy 'scripted:{arg}': the part after ':' is the action-noise std and must be a "
            "number"
        ) from None
    if not noise >= 0.0:  # also NaN
        raise ValueError(
            f"policy 'scripted:{arg}': the action-noise std must be a number >= 0 (m / rad per "
            "action)"
        )
    return noise


def _scripted(arg: str | None, start: Any, ctx: PolicyContext, seed: int) -> Any:
    from policies import make_policy

    noise = _scripted_noise(arg)
    return make_policy(
        "scripted",
        scene=start.spec.to_dict(),
        chunk_size=ctx.chunk_size,
        num_frames=ctx.num_frames,
        action_mode=ctx.action_mode,
        noise_std=noise,
        seed=seed,
    )


def _random(arg: str | None, start: Any, ctx: PolicyContext, seed: int) -> Any:
    from policies import make_policy

    if arg is not None:
        raise ValueError(f"the 'random' policy takes no argument, got random:{arg}")
    return make_policy("random", action_space=ctx.action_space, seed=seed)


def _sb3_spec(arg: str | None) -> tuple[str, str]:
    """``"[<algo>=]<path>"`` -> (algo, path of the saved zip); PPO unless an SB3 algo is named.

    Raises ``ValueError`` when no saved model is there (SB3 accepts the path without ``.zip``).
    """
    from policies.sb3 import ALGORITHMS

    algo, sep, rest = (arg or "").partition("=")
    if not sep or algo not in ALGORITHMS:  # a path may hold "=" itself
        algo, rest = "ppo", arg or ""
    for path in (rest, rest + ".zip"):
        if rest and Path(path).is_file():
            return algo, path
    raise ValueError(
        f"policy 'sb3:{arg or ''}': no saved SB3 model at {rest!r} (write it with model.save(); "
        f"name a non-PPO algorithm as sb3:<algo>=<path>, algo one of {sorted(ALGORITHMS)})"
    )


def _sb3(arg: str | None, start: Any, ctx: PolicyContext, seed: int) -> Any:
    from policies import make_policy

    algo, path = _sb3_spec(arg)
    return make_policy("sb3", path=path, algo=algo)


# policy kind -> builder(argument text after ':' or None, start state, context, seed):
# "scripted:<action-noise std>" (m / rad per action), "random", "sb3:[<algo>=]<model.zip>" (a
# saved stable-baselines3 model; it sees the same observation keys in both worlds). Add your own
# kind here to rank your policies: POLICY_KINDS["mine"] = builder.
POLICY_KINDS: dict[str, Callable[..., Any]] = {
    "scripted": _scripted,
    "random": _random,
    "sb3": _sb3,
}


def make_ope_policy(text: str, start: Any, ctx: PolicyContext, seed: int) -> Any:
    """Build the policy ``text`` (e.g. ``"scripted:0.01"``) for ``start``, reset and seeded."""
    kind, arg = parse_policy(text)
    policy = POLICY_KINDS[kind](arg, start, ctx, seed)
    policy.reset(start.instruction, seed=seed)
    return policy


def parse_policy(text: str) -> tuple[str, str | None]:
    """``"scripted:0.01"`` -> ("scripted", "0.01"); ``"random"`` -> ("random", None).

    The argument is checked here where that needs no loading: a scripted noise must be a number,
    an sb3 model file must exist.
    """
    from vap_env.config import did_you_mean

    kind, _, arg = text.partition(":")
    if kind not in POLICY_KINDS:
        raise ValueError(
            f"unknown policy {text!r}; use one of {sorted(POLICY_KINDS)} (scripted:<noise std>, "
            "sb3:[<algo>=]<model.zip>)." + did_you_mean(kind, list(POLICY_KINDS))
        )
    if kind == "scripted":
        _scripted_noise(arg)
    if kind == "sb3":
        _sb3_spec(arg)
    return kind, arg or None


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env bench ope``."""

    scenes: int = field(default=20, metadata={"help": "initial states (synthetic scenes)"})
    policies: tuple[str, ...] = field(
        default=DEFAULT_POLICIES,
        metadata={
            "help": "policies: scripted:<action noise std>, random, sb3:[<algo>=]<model.zip> "
            "(your saved stable-baselines3 model; algo ppo by default)"
        },
    )
    skills: tuple[str, ...] = field(
        default=SKILL_NAMES, metadata={"help": "skills of the scenes, cycled"}
    )
    chunks: int = field(default=4, metadata={"help": "env steps (chunks of K actions) per episode"})
    preset: str = field(
        default="rt1",
        metadata={"help": "env preset: rt1 or droid (synthetic scenes of the preset's robot)"},
    )
    weights: str | None = field(default=None, metadata={"help": "world model (None: the preset's)"})
    num_inference_steps: int | None = field(
        default=None, metadata={"help": "denoising steps per chunk (None: the model's default)"}
    )
    object_fraction: float = field(
        default=DetectorConfig.object_fraction,
        metadata={"help": "detector: share of object pixels in the goal region"},
    )
    drawer_coverage: float = field(
        default=DetectorConfig.drawer_coverage,
        metadata={"help": "detector: share of a drawer goal region covered"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the scenes, policies and model noise"})
    device: str = field(default="cpu", metadata={"help": "torch device of the world model"})
    threads: int = field(
        default=0, metadata={"help": "torch intra-op threads on the CPU; 0 = torch's default"}
    )
    videos: int = field(
        default=1,
        metadata={"help": "mp4 grids (ground truth | model | skeleton) of the first N scenes"},
    )
    out_dir: str | None = field(
        default=None, metadata={"help": "write ope.json, ope.md and the videos here"}
    )
    json: str | None = field(default=None, metadata={"help": "also write the JSON report here"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        if self.scenes < 1 or self.chunks < 1 or self.videos < 0:
            raise ValueError(
                f"scenes={self.scenes} and chunks={self.chunks} must be >= 1, videos={self.videos} >= 0"
            )
        if len(self.policies) < 2:
            raise ValueError(
                f"policies={list(self.policies)}: ranking agreement needs at least two policies"
            )
        for p in self.policies:
            parse_policy(p)
        repeated = sorted({p for p in self.policies if self.policies.count(p) > 1})
        if repeated:
            raise ValueError(
                f"policies={list(self.policies)} lists {repeated} more than once: each policy is "
                "rolled out once per scene; list it once"
            )
        unknown = [s for s in self.skills if s not in SKILL_NAMES]
        if unknown or not self.skills:
            raise ValueError(f"skills {list(self.skills)}: unknown {unknown}; use {SKILL_NAMES}")


def _act(policy: Any, name: str, observation: dict[str, Any], ctx: PolicyContext) -> np.ndarray:
    """``policy.act`` checked to be one finite (K, D) chunk of the env's action space."""
    from policies import as_chunk

    action = policy.act(observation)
    if np.ndim(action) == 1:
        raise ValueError(
            f"policy {name!r} returned one action of shape {np.shape(action)}, the env takes a "
            f"chunk {tuple(ctx.action_space.shape)}; a policy that returns one (D,) action per call "
            f"can be wrapped as make_policy('single_action', inner=policy, "
            f"chunk_size={ctx.chunk_size})"
        )
    return as_chunk(action, where=f"policy {name!r}", shape=ctx.action_space.shape)


def _rollout_world_model(
    envs: Any,
    start: Any,
    policies: list[Any],
    names: list[str],
    ctx: PolicyContext,
    seed: int,
    chunks: int,
) -> tuple[np.ndarray, np.ndarray]:
    """All policies from ``start`` in one vector env -> (videos, skeletons), each (P, 1 + n*K, H, W, 3)."""
    # Every slot gets the scene's seed: the policies meet the same model noise (common random
    # numbers), and a policy's numbers do not depend on its place in the list.
    obs, _ = envs.reset(seed=[seed] * len(policies), options=start.reset_options())
    videos = [[obs["image"][i]] for i in range(len(policies))]
    skeletons = [[obs["skeleton"][i]] for i in range(len(policies))]
    for _ in range(chunks):
        actions = np.stack(
            [
                _act(p, names[i], {k: v[i] for k, v in obs.items()}, ctx)
                for i, p in enumerate(policies)
            ]
        )
        obs, _, _, _, info = envs.step(actions)
        for i in range(len(policies)):
            videos[i].extend(info["frames"][i])
            skeletons[i].extend(info["skeleton_frames"][i])
    return np.asarray(videos), np.asarray(skeletons)


def rollout_ground_truth(
    sim: Any,
    start: Any,
    policy: Any,
    chunks: int,
    ctx: PolicyContext | None = None,
    name: str = "policy",
) -> np.ndarray:
    """One policy from ``start`` in the simulator -> video (1 + n*K, H, W, 3).

    With ``ctx``, each chunk is first checked against its action space (errors name ``name``).
    """
    obs = sim.reset(start.spec)
    frames = [obs["image"]]
    for _ in range(chunks):
        action = policy.act(obs) if ctx is None else _act(policy, name, obs, ctx)
        chunk_frames, obs = sim.step(action)
        frames.extend(chunk_frames)
    return np.stack(frames)


def _finite(x: float) -> float | None:
    """JSON has no NaN: an undefined detector score (object not seen) becomes null."""
    return float(x) if np.isfinite(x) else None


def _rate(values: list[bool]) -> dict[str, Any]:
    from benchmarks.metrics import summarize_rate

    return summarize_rate(values, name="success_rate").to_dict()


def policy_seed(scene_seed: int, policy: str) -> int:
    """The seed of ``policy`` in a scene: the same on both sides, whatever the policy list is."""
    key = zlib.crc32(policy.encode())
    return int(np.random.SeedSequence([scene_seed, key]).generate_state(1)[0])


def agreement_notes(
    gt: list[float],
    wm: list[float],
    state: list[float],
    detector_accuracy: float,
    n_scenes: int,
    rows: list[dict[str, Any]],
) -> list[str]:
    """Why the agreement figures of a run say little (empty: nothing to add).

    Args:
        gt / wm / state: per-policy success rates (detector on the simulator's videos, detector
            on the world model's, the simulator's state).
        detector_accuracy: the detector against the simulator's state on ground-truth videos.
        rows: the per-episode rows (``gt_score`` / ``wm_score`` None: the object was not seen).
    """
    notes = []
    if len(gt) == 2:
        notes.append(
            "with two policies Pearson r can only be -1, 0 or 1: rank three or more policies"
        )
    if n_scenes < 10:
        notes.append(f"{n_scenes} scene(s): success rates move in steps of 1/{n_scenes}")
    for what, real in (("detector", gt), ("simulator-state", state)):
        if max(real) == min(real):
            notes.append(
                f"the policies' {what} ground-truth success rates are all {real[0]:.2f}: there is "
                "no ranking to agree with, so its Pearson r and MMRV are null"
            )
    if max(wm) == min(wm) and max(gt) != min(gt):
        notes.append(
            f"the world model gives every policy the same success rate ({wm[0]:.2f}): it ranks "
            "nothing (Pearson r is 0 by SimplerEnv's convention)"
        )
    if detector_accuracy < 0.8:
        notes.append(
            f"the detector agrees with the simulator's outcome on only {detector_accuracy:.0%} "
            "of ground-truth episodes: these figures measure the detector more than the world model"
        )
    if any(r["wm_score"] is None or r["gt_score"] is None for r in rows):
        notes.append(
            "a null gt_score / wm_score is an episode whose last frame shows none of the "
            "object's colour (the detector cannot score it; it counts as a failure)"
        )
    return notes


def run(cfg: Config) -> dict[str, Any]:
    """Evaluate every policy on every scene in both worlds; returns the report (see ``main``)."""
    from benchmarks.st_iou import torch_threads

    with torch_threads(cfg.threads):
        return _run(cfg)


def _run(cfg: Config) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from benchmarks.ground_truth_sim import (
        GroundTruthSim,
        SuccessDetector,
        goal_region,
        make_scene_start,
    )
    from benchmarks.metrics import mean_maximum_rank_violation, pearson
    from vap_env.vector_env import VAPVectorEnv

    overrides: dict[str, Any] = {
        "num_inference_steps": cfg.num_inference_steps,
        "device": cfg.device,
        "max_episode_steps": None,
    }
    if cfg.weights is not None:
        overrides["weights"] = cfg.weights
    envs = VAPVectorEnv(num_envs=len(cfg.policies), preset=cfg.preset, **overrides)
    k = envs.chunk_frames
    ctx = PolicyContext(k, 1 + cfg.chunks * k, envs.config.action_mode, envs.single_action_space)
    detector = SuccessDetector(
        DetectorConfig(object_fraction=cfg.object_fraction, drawer_coverage=cfg.drawer_coverage)
    )
    out_dir = Path(cfg.out_dir) if cfg.out_dir else None
    rows: list[dict[str, Any]] = []
    videos_written: list[str] = []
    start_time = time.perf_counter()
    try:
        sim = GroundTruthSim(envs.config.robot, envs.config.action_mode, envs.config.action_limits)
        height, width = envs.core.height, envs.core.width
        for s in tqdm(range(cfg.scenes), desc="ope scenes", disable=not cfg.progress):
            skill = cfg.skills[s % len(cfg.skills)]
            scene_seed = cfg.seed * 100_003 + s
            start = make_scene_start(envs.config.robot, skill, scene_seed, width, height)
            goal = goal_region(start)
            # Each policy gets the same seed on both sides, so stochastic policies draw the same noise.
            seeds = [policy_seed(scene_seed, name) for name in cfg.policies]
            wm_policies = [
                make_ope_policy(name, start, ctx, seed)
                for name, seed in zip(cfg.policies, seeds, strict=True)
            ]
            wm_videos, skeletons = _rollout_world_model(
                envs, start, wm_policies, list(cfg.policies), ctx, scene_seed, cfg.chunks
            )
            gt_videos = []
            for p, name in enumerate(cfg.policies):
                policy = make_ope_policy(name, start, ctx, seeds[p])
                gt_video = rollout_ground_truth(sim, start, policy, cfg.chunks, ctx, name)
                gt_videos.append(gt_video)
                gt_ok, gt_score = detector(gt_video, goal)
                wm_ok, wm_score = detector(wm_videos[p], goal)
                rows.append(
                    {
                        "scene": s,
                        "skill": skill,
                        "instruction": start.instruction,
                        "policy": name,
                        "gt_state_success": sim.state_success(),
                        "gt_success": gt_ok,
                        "gt_score": _finite(gt_score),
                        "wm_success": wm_ok,
                        "wm_score": _finite(wm_score),
                    }
                )
            if out_dir is not None and s < cfg.videos:
                from benchmarks.st_iou import upscale
                from vap_env.video import write_video

                # one row per policy: ground truth | world model | skeleton prompt
                grid = np.concatenate(
                    [
                        np.concatenate(videos, axis=2)
                        for videos in zip(gt_videos, wm_videos, skeletons, strict=True)
                    ],
                    axis=1,
                )  # (T, P*H, 3*W, 3)
                path = out_dir / f"ope_scene{s:03d}_{skill}.mp4"
                write_video(path, upscale(grid), fps=envs.config.render_fps)
                videos_written.append(str(path))
    finally:
        envs.close()

    def rates(mine: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "n": len(mine),
            "gt_success_rate": _rate([r["gt_success"] for r in mine]),
            "wm_success_rate": _rate([r["wm_success"] for r in mine]),
            "gt_state_success_rate": _rate([r["gt_state_success"] for r in mine]),
        }

    per_policy = []
    for name in cfg.policies:
        mine = [r for r in rows if r["policy"] == name]
        skills = sorted({r["skill"] for r in mine})
        per_policy.append(
            {
                "policy": name,
                **rates(mine),
                "per_skill": {k: rates([r for r in mine if r["skill"] == k]) for k in skills},
            }
        )
    gt = [p["gt_success_rate"]["value"] for p in per_policy]
    wm = [p["wm_success_rate"]["value"] for p in per_policy]
    state = [p["gt_state_success_rate"]["value"] for p in per_policy]

    def ranked(real: list[float], metric: Callable[[list[float]], float]) -> float | None:
        # Policies that succeed equally often in reality have no order to agree with: SimplerEnv's
        # Pearson would say 1 (or 0) and MMRV 0, which reads as agreement; report none instead.
        return None if max(real) == min(real) else metric(real)

    agreement = {
        # "real" is the same detector on the simulator's videos, so detector errors on either
        # side cancel; the *_vs_state figures rank against the simulator's true outcomes instead.
        "pearson": ranked(gt, lambda r: pearson(r, wm)),
        "mmrv": ranked(gt, lambda r: mean_maximum_rank_violation(real=r, sim=wm)),
        "pearson_vs_state": ranked(state, lambda r: pearson(r, wm)),
        "mmrv_vs_state": ranked(state, lambda r: mean_maximum_rank_violation(real=r, sim=wm)),
        "episode_agreement": float(np.mean([r["gt_success"] == r["wm_success"] for r in rows])),
        "detector_accuracy_on_ground_truth": float(
            np.mean([r["gt_success"] == r["gt_state_success"] for r in rows])
        ),
        "n_policies": len(per_policy),
        "n_scenes": cfg.scenes,
    }
    notes = agreement_notes(
        gt, wm, state, agreement["detector_accuracy_on_ground_truth"], cfg.scenes, rows
    )
    return {
        "benchmark": "ope",
        "config": dataclasses.asdict(cfg),
        "weights": envs.config.weights,
        "resolution_hw": [height, width],
        "chunk_frames": k,
        "detector": "ground_truth_sim.SuccessDetector (sim colour prototypes, simulator goal region)",
        "episodes": rows,
        "policies": per_policy,
        "agreement": agreement,
        "notes": notes,
        "videos": videos_written,
        "seconds": time.perf_counter() - start_time,
    }


def format_report(report: dict[str, Any]) -> str:
    """Markdown: per-policy success in both worlds, then the agreement figures."""
    from benchmarks.metrics import markdown_table

    def cell(r: dict[str, Any]) -> str:
        ci = r["ci"]
        return f"{r['value']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

    rows = [
        [
            p["policy"],
            p["n"],
            cell(p["gt_success_rate"]),
            cell(p["wm_success_rate"]),
            cell(p["gt_state_success_rate"]),
        ]
        for p in report["policies"]
    ]
    header = [
        "policy",
        "n",
        "success: ground truth (detector)",
        "success: world model (detector)",
        "ground truth (simulator state)",
    ]
    a = report["agreement"]

    def num(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    # reports saved before intervals named their method were bootstrap ones
    method = report["policies"][0]["gt_success_rate"].get("ci_method") or "bootstrap"
    notes = "".join(f"\n- {note}" for note in report.get("notes", []))
    return (
        markdown_table(header, rows)
        + f"\n\nPearson r = {num(a['pearson'])}, MMRV = {num(a['mmrv'])} over {a['n_policies']} "
        f"policies x {a['n_scenes']} scenes (real = the detector on the ground-truth simulator's "
        f"videos, sim = the detector on the world model's, weights {report['weights']!r}); "
        + (
            f"against the simulator's state instead: Pearson r = {num(a['pearson_vs_state'])}, "
            f"MMRV = {num(a['mmrv_vs_state'])}; "
            if "pearson_vs_state" in a  # reports saved before these figures existed lack them
            else ""
        )
        + f"per-episode agreement {a['episode_agreement']:.2f}; detector "
        f"accuracy on ground-truth videos {a['detector_accuracy_on_ground_truth']:.2f}. "
        f"Success rates over scenes with 95% {method} intervals."
        + (f"\n\nNotes:{notes}" if notes else "")
    )


def main(cfg: Config) -> int:
    """Run the evaluation, print the Markdown report, write JSON / Markdown / videos if asked."""
    report = run(cfg)
    text = format_report(report)
    print(text)
    targets = [Path(cfg.json)] if cfg.json else []
    if cfg.out_dir:
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "ope.md").write_text("# Offline policy evaluation\n\n" + text + "\n")
        targets.append(out / "ope.json")
    for path in targets:
        write_json(path, report)  # strict: NaN / inf as null
    return 0
