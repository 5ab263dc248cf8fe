"""``CogVideoXSampler``: the denoising loop of the world model, written out.

The network is a plain function ``predict(latents, timesteps, text_embeds=..., **conditions) -> v`` (the
v-prediction of CogVideoX), so the sampler knows nothing about ControlNet or image conditioning; it
owns the timesteps, classifier-free guidance and the scheduler update.

Randomness is drawn *per batch item* from that item's ``torch.Generator`` (initial noise and, for the
stochastic DPM update, the per-step noise), so generating B chunks in one call gives exactly the
chunks that B separate calls with the same generators give. Nothing is carried between calls: the
cost of a chunk does not depend on how many chunks came before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

# config name -> scheduler class; both use the released CogVideoX settings (v-prediction,
# zero-terminal-SNR betas, trailing timestep spacing) from the backbone's scheduler/ folder or preset.
SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    "ddim": CogVideoXDDIMScheduler,
    "dpm": CogVideoXDPMScheduler,
}

Generators = torch.Generator | Sequence[torch.Generator | None] | None
# predict(latents (B, F, C, h, w), timesteps (B,), text_embeds=(B, L, D), **conditions) -> (B, F, C, h, w)
PredictFn = Callable[..., torch.Tensor]


def per_item_generators(generator: Generators, batch_size: int) -> list[torch.Generator | None]:
    """One generator (or None = torch's global RNG) per batch item.

    A single generator is shared by all items (drawn from in item order); a list must have one entry
    per item. Only a list of distinct generators makes batched and per-item generation identical.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return [generator] * batch_size
    generators = list(generator)
    if len(generators) != batch_size:
        raise ValueError(
            f"got {len(generators)} generators for a batch of {batch_size}: pass one torch.Generator "
            "per batch item, a single generator, or None"
        )
    return generators


def initial_noise(
    shape: tuple[int, ...],  # (B, F, C, h, w)
    generators: list[torch.Generator | None],
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Gaussian noise (B, F, C, h, w), item b drawn from ``generators[b]`` on that generator's device.

    Drawing on the generator's device (CPU generators on a GPU model) keeps a seed's noise the same
    on every machine, as diffusers' ``randn_tensor`` does.
    """
    items = []
    for gen in generators:
        gen_device = gen.device if gen is not None else torch.device("cpu")
        items.append(torch.randn((1, *shape[1:]), generator=gen, device=gen_device))
    return torch.cat(items).to(device=device, dtype=dtype)


def _ddim_step(
    scheduler: CogVideoXDDIMScheduler,
    model_output: torch.Tensor,
    t: torch.Tensor,
    t_back: torch.Tensor | None,
    latents: torch.Tensor,
    old_x0: torch.Tensor | None,
    generators: list[torch.Generator | None],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    # eta = 0: deterministic and elementwise, so the whole batch steps at once.
    return scheduler.step(model_output, t, latents, eta=0.0, return_dict=False)[0], None


def _dpm_step(
    scheduler: CogVideoXDPMScheduler,
    model_output: torch.Tensor,
    t: torch.Tensor,
    t_back: torch.Tensor | None,
    latents: torch.Tensor,
    old_x0: torch.Tensor | None,
    generators: list[torch.Generator | None],
) -> tuple[torch.Tensor, torch.Tensor]:
    # The DPM update injects fresh noise every step; stepping item by item draws it from each item's
    # own generator (a batched call would draw one tensor from one generator).
    new, x0 = [], []
    for b, gen in enumerate(generators):
        prev, pred_x0 = scheduler.step(
            model_output[b : b + 1],
            None if old_x0 is None else old_x0[b : b + 1],
            t,
            t_back,
            latents[b : b + 1],
            generator=gen,
            return_dict=False,
        )
        new.append(prev)
        x0.append(pred_x0)
    return torch.cat(new), torch.cat(x0)


_STEPS: dict[type[SchedulerMixin], Callable[..., tuple[torch.Tensor, torch.Tensor | None]]] = {
    CogVideoXDDIMScheduler: _ddim_step,
    CogVideoXDPMScheduler: _dpm_step,
}


class CogVideoXSampler:
    """Denoising loop over a CogVideoX scheduler, with optional classifier-free guidance.

    Args:
        scheduler: a ``CogVideoXDDIMScheduler`` or ``CogVideoXDPMScheduler``.
        num_inference_steps: default number of denoising steps.
        guidance_scale: default guidance scale; > 1 runs the unconditional branch too.
    """

    def __init__(
        self, scheduler: SchedulerMixin, num_inference_steps: int = 50, guidance_scale: float = 1.0
    ) -> None:
        if type(scheduler) not in _STEPS:
            raise TypeError(
                f"scheduler {type(scheduler).__name__} is not supported: use one of "
                f"{[cls.__name__ for cls in _STEPS]}"
            )
        self.scheduler = scheduler
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale

    def timesteps(self, num_inference_steps: int, device: torch.device) -> torch.Tensor:
        """The scheduler's timesteps (num_inference_steps,), from noisiest to cleanest."""
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        return self.scheduler.timesteps

    def sample(
        self,
        predict: PredictFn,
        shape: tuple[int, ...],  # (B, F, C, h, w)
        text_embeds: torch.Tensor,  # (B, L, D)
        negative_embeds: torch.Tensor | None = None,  # (1 or B, L, D)
        conditions: dict[str, torch.Tensor] | None = None,  # each (B, ...)
        generator: Generators = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """Denoise fresh noise of ``shape`` into clean latents (B, F, C, h, w).

        ``conditions`` are extra per-item inputs of ``predict`` (image and control latents); with
        guidance they are repeated for the unconditional half, which differs only in its text.
        """
        steps = self.num_inference_steps if num_inference_steps is None else num_inference_steps
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        if steps < 1:
            raise ValueError(f"num_inference_steps={steps} must be >= 1")
        if scale < 1.0:
            raise ValueError(f"guidance_scale={scale} must be >= 1.0 (1.0 disables guidance)")
        batch = shape[0]
        if text_embeds.shape[0] != batch:
            raise ValueError(
                f"text_embeds has batch {text_embeds.shape[0]} but the latents have batch {batch}"
            )
        device, dtype = text_embeds.device, text_embeds.dtype
        generators = per_item_generators(generator, batch)
        conditions = dict(conditions or {})
        guided = scale > 1.0
        if guided:
            if negative_embeds is None:
                raise ValueError(
                    "guidance_scale > 1 needs negative_embeds (the unconditional text)"
                )
            negative = negative_embeds.expand(batch, -1, -1)
            text_embeds = torch.cat([negative, text_embeds])
            conditions = {k: torch.cat([v, v]) for k, v in conditions.items()}

        latents = initial_noise(shape, generators, device, dtype) * self.scheduler.init_noise_sigma
        timesteps = self.timesteps(steps, device)
        step = _STEPS[type(self.scheduler)]
        old_x0 = None
        for i, t in enumerate(timesteps):
            model_input = torch.cat([latents, latents]) if guided else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            out = predict(
                model_input, t.expand(model_input.shape[0]), text_embeds=text_embeds, **conditions
            )
            # The update runs in float32 as diffusers' CogVideoX pipelines do.
            out = out.float()
            if guided:
                uncond, cond = out.chunk(2)
                out = uncond + scale * (cond - uncond)
            t_back = timesteps[i - 1] if i > 0 else None
            latents, old_x0 = step(self.scheduler, out, t, t_back, latents, old_x0, generators)
            latents = latents.to(dtype)
        return latents
