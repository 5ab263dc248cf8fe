"""Speed and memory of the world model: seconds per chunk, frames/s, peak memory, rollout stability.

    vap-env bench world-model --preset tiny --json out.json

Times ``generate_chunk`` of a preset at batch 1 and 8 (median of ``repeats`` chunks after a warm-up),
then one autoregressive rollout of ``rollout_chunks`` chunks (each context = the previous chunk's last
frame) and compares the first and last chunk: the target ratio is <= 1.1, since nothing grows with
the rollout. With ``--full-size`` it also takes the released CogVideoX-2B and -5B-I2V architectures
with random weights (timing needs no trained weights; no download) at 320x256, 8-frame chunks,
10 / 25 / 50 steps in bf16 (``--full-size-batch-sizes`` for batched envs): seconds per chunk and
peak GPU memory on a CUDA device, always next to
the FLOPs lower bound counted by ``torch.utils.flop_counter`` on the meta device (transformer +
ControlNet per denoising step; the VAE and the cached text encoder are left out, hence a lower
bound). Without a GPU the full-size rows carry the FLOPs only and say that timing was skipped.

Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU and the process's peak resident set size
on the CPU (monotonic over the run, so the batch-8 figure includes everything before it).
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from vap_env.models import WorldModel, WorldModelConfig, load_model_preset, load_world_model
from vap_env.strict_json import write_json

FULL_SIZE_PRESETS = ("cogvideox-2b", "cogvideox-5b-i2v")
# The text encoder is off the per-chunk path (embeddings are cached per instruction), so timing runs
# use a 1-layer T5 of the right width instead of a random 4.7B-parameter T5-XXL.
STAND_IN_TEXT_ENCODER = {
    "vocab_size": 384,
    "d_model": 4096,
    "d_kv": 64,
    "num_heads": 2,
    "d_ff": 256,
    "num_layers": 1,
    "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0,
}
H100_BF16_DENSE_FLOPS = 989e12  # H100 SXM peak dense bf16 tensor-core rate


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env bench world-model``."""

    preset: str = field(
        default="tiny",
        metadata={
            "help": "the world model timed: a shipped checkpoint (tiny-rt1, tiny-droid), a model "
            "preset (tiny: random weights, same speed) or a weights directory"
        },
    )
    batch_sizes: tuple[int, ...] = field(
        default=(1, 8), metadata={"help": "batch sizes (environments) to time"}
    )
    repeats: int = field(default=3, metadata={"help": "timed chunks per batch size (median)"})
    rollout_chunks: int = field(default=20, metadata={"help": "chunks in the rollout"})
    num_inference_steps: int = field(
        default=0, metadata={"help": "denoising steps; 0 = the preset's"}
    )
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto"})
    threads: int = field(
        default=0, metadata={"help": "torch intra-op threads on the CPU; 0 = torch's default"}
    )
    full_size: bool = field(
        default=False,
        metadata={
            "help": "also the full-size 2B / 5B-I2V configs (timed on a GPU, FLOPs anywhere)"
        },
    )
    full_size_steps: tuple[int, ...] = field(
        default=(10, 25, 50), metadata={"help": "denoising steps of the full-size rows"}
    )
    full_size_batch_sizes: tuple[int, ...] = field(
        default=(1,), metadata={"help": "batch sizes of the full-size rows (GPU only)"}
    )
    full_size_height: int = field(default=256, metadata={"help": "full-size frame height"})
    full_size_width: int = field(default=320, metadata={"help": "full-size frame width"})
    seed: int = field(default=0, metadata={"help": "seed of the inputs and noise"})
    json: str | None = field(default=None, metadata={"help": "write the results to this JSON file"})


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _inputs(wm: WorldModel, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    cfg = wm.config
    context = rng.integers(0, 256, (batch, cfg.height, cfg.width, 3), dtype=np.uint8)
    skeleton = rng.integers(
        0, 256, (batch, cfg.chunk_frames + 1, cfg.height, cfg.width, 3), dtype=np.uint8
    )
    return context, skeleton, ["pick coke can"] * batch


def _timed_chunk(
    wm: WorldModel, context, skeleton, instructions, steps: int | None, seed: int
) -> tuple[float, float, torch.Tensor]:
    """(wall seconds, process CPU seconds, frames) of one ``generate_chunk``."""
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(instructions))]
    _sync(wm.device)
    start, cpu_start = time.perf_counter(), time.process_time()
    frames = wm.generate_chunk(
        context, skeleton, instructions, generator=generators, num_inference_steps=steps
    )
    _sync(wm.device)
    return time.perf_counter() - start, time.process_time() - cpu_start, frames


def time_batches(wm: WorldModel, cfg: Config, steps: int | None) -> list[dict[str, Any]]:
    """Median seconds per chunk, frames/s and peak memory per batch size."""
    rows = []
    for batch in cfg.batch_sizes:
        context, skeleton, instructions = _inputs(wm, batch, cfg.seed)
        _timed_chunk(wm, context, skeleton, instructions, steps, cfg.seed)  # warm-up
        _reset_peak(wm.device)
        times = [
            _timed_chunk(wm, context, skeleton, instructions, steps, cfg.seed + r)[0]
            for r in range(cfg.repeats)
        ]
        seconds = statistics.median(times)
        rows.append(
            {
                "batch_size": batch,
                "seconds_per_chunk": seconds,
                "frames_per_second": batch * wm.config.chunk_frames / seconds,
                "peak_memory_mb": _peak_memory_mb(wm.device),
                "times_s": times,
            }
        )
    return rows


def time_rollout(wm: WorldModel, cfg: Config, steps: int | None) -> dict[str, Any]:
    """Per-chunk seconds over one autoregressive rollout (batch 1).

    Besides wall time, the process CPU time per chunk: on a shared machine it shows the work a chunk
    takes without the other jobs' interference (on a GPU it only counts the host side).
    """
    context, skeleton, instructions = _inputs(wm, 1, cfg.seed)
    _timed_chunk(wm, context, skeleton, instructions, steps, cfg.seed)  # warm-up
    times, cpu_times = [], []
    for i in range(cfg.rollout_chunks):
        seconds, cpu, frames = _timed_chunk(
            wm, context, skeleton, instructions, steps, cfg.seed + i
        )
        context = frames[:, -1].numpy()  # the last generated frame is the next context
        times.append(seconds)
        cpu_times.append(cpu)
    k = min(5, len(times))
    return {
        "chunks": len(times),
        "seconds": times,
        "cpu_seconds": cpu_times,
        "first_chunk_s": times[0],
        "last_chunk_s": times[-1],
        "ratio_last_to_first": times[-1] / times[0],
        "cpu_ratio_last_to_first": cpu_times[-1] / cpu_times[0],
        # Single chunks are noisy on a shared CPU: the median of the first vs the last k chunks.
        "median_window": k,
        # null when the windows overlap (fewer than 2k chunks): a chunk compared with itself
        "ratio_median_last_to_first": (
            statistics.median(times[-k:]) / statistics.median(times[:k])
            if len(times) >= 2 * k
            else None
        ),
    }


def full_size_config(name: str, height: int, width: int) -> WorldModelConfig:
    """A released architecture with random weights at ``height`` x ``width``, 8-frame chunks, bf16."""
    cfg = load_model_preset(name)
    factor = 8  # the released VAE downsamples by 8
    transformer = {
        **cfg.transformer,
        # Learned positional tables (5B-I2V) are built for this size; values are random anyway.
        "sample_height": height // factor,
        "sample_width": width // factor,
    }
    return dataclasses.replace(
        cfg,
        backbone=None,
        weights=None,
        height=height,
        width=width,
        chunk_frames=8,
        dtype="bfloat16",
        transformer=transformer,
        text_encoder=STAND_IN_TEXT_ENCODER,
    )


def step_flops(model_cfg: WorldModelConfig) -> tuple[int, dict[str, int]]:
    """FLOPs of one denoising step (transformer + ControlNet, guidance batch included), on meta."""
    wm = WorldModel.from_config(model_cfg, device="meta", dtype=torch.bfloat16)
    batch = 2 if model_cfg.guidance_scale > 1.0 else 1
    h, w = wm.latent_size
    shape = (batch, model_cfg.latent_frames, wm.latent_channels, h, w)
    text = (batch, wm.transformer.config.max_text_seq_length, wm.transformer.config.text_embed_dim)
    kwargs = {"device": "meta", "dtype": torch.bfloat16}
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        wm.predict(
            torch.empty(shape, **kwargs),
            torch.zeros(batch, device="meta", dtype=torch.long),
            torch.empty(shape, **kwargs),
            torch.empty(shape, **kwargs),
            torch.empty(text, **kwargs),
        )
    params = {
        "transformer": sum(p.numel() for p in wm.transformer.parameters()),
        "controlnet": sum(p.numel() for p in wm.controlnet.parameters()),
        "vae": sum(p.numel() for p in wm.vae.parameters()),
    }
    return counter.get_total_flops(), params


def full_size_rows(cfg: Config, device: torch.device) -> list[dict[str, Any]]:
    """FLOPs lower bound (always) and GPU timing (CUDA only) of the full-size architectures."""
    results = []
    for name in FULL_SIZE_PRESETS:
        model_cfg = full_size_config(name, cfg.full_size_height, cfg.full_size_width)
        flops, params = step_flops(model_cfg)
        entry: dict[str, Any] = {
            "preset": name,
            "height": model_cfg.height,
            "width": model_cfg.width,
            "chunk_frames": model_cfg.chunk_frames,
            "guidance_scale": model_cfg.guidance_scale,
            "dtype": "bfloat16",
            "parameters": params,
            "tflops_per_step": flops / 1e12,
            "rows": [],
        }
        wm = None
        if device.type == "cuda":
            wm = WorldModel.from_config(model_cfg, device=device, dtype=torch.bfloat16)
        else:
            entry["note"] = "no CUDA device: timing skipped, FLOPs counted on the meta device"
        for batch in cfg.full_size_batch_sizes if wm is not None else (1,):
            if wm is not None:
                context, skeleton, instructions = _inputs(wm, batch, cfg.seed)
                # Warm-up (kernel selection, allocator) at the fewest steps of this batch size.
                _timed_chunk(
                    wm, context, skeleton, instructions, min(cfg.full_size_steps), cfg.seed
                )
            for steps in cfg.full_size_steps:
                row: dict[str, Any] = {
                    "batch_size": batch,
                    "steps": steps,
                    "tflops_lower_bound": batch * steps * flops / 1e12,
                    "h100_bound_s": batch * steps * flops / H100_BF16_DENSE_FLOPS,
                    "seconds_per_chunk": None,
                    "frames_per_second": None,
                    "peak_memory_gb": None,
                }
                if wm is not None:
                    _reset_peak(device)
                    seconds, _, _ = _timed_chunk(
                        wm, context, skeleton, instructions, steps, cfg.seed
                    )
                    row["seconds_per_chunk"] = seconds
                    row["frames_per_second"] = batch * model_cfg.chunk_frames / seconds
                    row["peak_memory_gb"] = _peak_memory_mb(device) / 1024
                entry["rows"].append(row)
        del wm
        if device.type == "cuda":
            torch.cuda.empty_cache()
        results.append(entry)
    return results


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict[str, Any]) -> None:
    """A short human-readable table of ``report``."""
    print(
        f"world model {report['preset']} on {report['device']} ({report['dtype']}, "
        f"{report['height']}x{report['width']}, K={report['chunk_frames']}, "
        f"{report['num_inference_steps']} steps)"
    )
    print(f"{'batch':>5} {'s/chunk':>9} {'frames/s':>9} {'peak MB':>9}")
    for row in report["batches"]:
        print(
            f"{row['batch_size']:>5} {row['seconds_per_chunk']:>9.3f} "
            f"{row['frames_per_second']:>9.1f} {row['peak_memory_mb']:>9.0f}"
        )
    roll = report["rollout"]
    if roll["chunks"]:
        print(
            f"rollout of {roll['chunks']} chunks: first {roll['first_chunk_s']:.3f} s, last "
            f"{roll['last_chunk_s']:.3f} s, ratio {roll['ratio_last_to_first']:.2f} (CPU time "
            f"{roll['cpu_ratio_last_to_first']:.2f}, medians of {roll['median_window']}: "
            + (
                f"{roll['ratio_median_last_to_first']:.2f})"
                if roll["ratio_median_last_to_first"] is not None
                else "-, too few chunks)"
            )
        )
    for entry in report.get("full_size", []):
        print(
            f"{entry['preset']} {entry['width']}x{entry['height']} K={entry['chunk_frames']} bf16, "
            f"{entry['tflops_per_step']:.1f} TFLOP per step (transformer + ControlNet)"
            + (f" [{entry['note']}]" if "note" in entry else "")
        )
        print(
            f"{'batch':>5} {'steps':>7} {'s/chunk':>9} {'frames/s':>9} {'peak GB':>8} {'TFLOP':>8} "
            f"{'H100 bound s':>13}"
        )
        for row in entry["rows"]:
            print(
                f"{row['batch_size']:>5} {row['steps']:>7} {_fmt(row['seconds_per_chunk'], '.3f'):>9} "
                f"{_fmt(row['frames_per_second'], '.1f'):>9} "
                f"{_fmt(row['peak_memory_gb'], '.1f'):>8} {row['tflops_lower_bound']:>8.1f} "
                f"{row['h100_bound_s']:>13.3f}"
            )


def main(cfg: Config) -> int:
    """Run the benchmark, print the table, write JSON if asked; returns 0."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if any(b < 1 for b in cfg.batch_sizes) or cfg.repeats < 1 or cfg.rollout_chunks < 0:
        raise ValueError(
            f"batch_sizes={cfg.batch_sizes}, repeats={cfg.repeats}, rollout_chunks="
            f"{cfg.rollout_chunks}: batch sizes and repeats must be >= 1, rollout_chunks >= 0"
        )
    device = _device(cfg.device)
    wm = load_world_model(cfg.preset, device=device)
    steps = cfg.num_inference_steps or None
    report: dict[str, Any] = {
        "benchmark": "world-model",
        "preset": cfg.preset,
        "device": str(device)
        + (f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""),
        "dtype": str(wm.dtype).removeprefix("torch."),
        "height": wm.config.height,
        "width": wm.config.width,
        "chunk_frames": wm.config.chunk_frames,
        "num_inference_steps": steps or wm.config.num_inference_steps,
        "batches": time_batches(wm, cfg, steps),
        "rollout": time_rollout(wm, cfg, steps)
        if cfg.rollout_chunks
        else {"chunks": 0, "seconds": []},
    }
    if cfg.full_size:
        report["full_size"] = full_size_rows(cfg, device)
    print_report(report)
    if cfg.json:
        write_json(cfg.json, report, indent=2)
    return 0
