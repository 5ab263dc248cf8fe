"""CogVideoXSampler: per-item randomness, guidance, timesteps, with a batch-invariant toy network."""

from __future__ import annotations

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DDPMScheduler

from vap_env.models import CogVideoXSampler, load_model_preset

SHAPE = (3, 2, 4, 6, 5)  # (B, F, C, h, w)


def scheduler(cls):
    return cls(**load_model_preset("tiny").scheduler_config)


def toy_predict(latents, timesteps, text_embeds, image_latents):
    """Elementwise in the batch: item b's output depends only on item b (exactly)."""
    text = text_embeds.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)
    t = timesteps.float().view(-1, 1, 1, 1, 1) / 1000
    return torch.tanh(latents * (1 + t) + text + 0.5 * image_latents)


def run(sampler, batch_items, seeds, guidance, steps=4):
    g = torch.Generator().manual_seed(0)
    text = torch.randn(SHAPE[0], 7, 3, generator=g)[batch_items]
    image = torch.randn(SHAPE, generator=g)[batch_items]
    return sampler.sample(
        toy_predict,
        shape=(len(batch_items), *SHAPE[1:]),
        text_embeds=text,
        negative_embeds=torch.zeros(1, 7, 3),
        conditions={"image_latents": image},
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        num_inference_steps=steps,
        guidance_scale=guidance,
    )


@pytest.mark.parametrize("cls", [CogVideoXDDIMScheduler, CogVideoXDPMScheduler])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_batched_equals_per_item_exactly(cls, guidance):
    sampler = CogVideoXSampler(scheduler(cls))
    seeds = [5, 6, 7]
    batched = run(sampler, [0, 1, 2], seeds, guidance)
    for i, seed in enumerate(seeds):
        assert torch.equal(batched[i : i + 1], run(sampler, [i], [seed], guidance))


@pytest.mark.parametrize("cls", [CogVideoXDDIMScheduler, CogVideoXDPMScheduler])
def test_seeds_control_the_result(cls):
    sampler = CogVideoXSampler(scheduler(cls))
    a = run(sampler, [0], [1], 1.0)
    assert torch.equal(a, run(sampler, [0], [1], 1.0))
    assert not torch.equal(a, run(sampler, [0], [2], 1.0))


def test_guidance_changes_the_result_and_needs_negative_text():
    sampler = CogVideoXSampler(scheduler(CogVideoXDDIMScheduler))
    assert not torch.equal(run(sampler, [0], [1], 1.0), run(sampler, [0], [1], 4.0))
    with pytest.raises(ValueError, match="negative_embeds"):
        sampler.sample(
            toy_predict,
            shape=(1, *SHAPE[1:]),
            text_embeds=torch.zeros(1, 7, 3),
            conditions={"image_latents": torch.zeros(1, *SHAPE[1:])},
            guidance_scale=2.0,
        )


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_guided_step_is_uncond_plus_scale_times_cond_minus_uncond(scale):
    # One DDIM step by hand: the scheduler's update of u + s (c - u), where c and u are the
    # network's outputs on the instruction and on the negative text, from the item's own noise.
    sampler = CogVideoXSampler(scheduler(CogVideoXDDIMScheduler))
    g = torch.Generator().manual_seed(0)
    text = torch.randn(1, 7, 3, generator=g)
    negative = torch.randn(1, 7, 3, generator=g)
    image = torch.randn((1, *SHAPE[1:]), generator=g)
    out = sampler.sample(
        toy_predict,
        shape=(1, *SHAPE[1:]),
        text_embeds=text,
        negative_embeds=negative,
        conditions={"image_latents": image},
        generator=[torch.Generator().manual_seed(9)],
        num_inference_steps=1,
        guidance_scale=scale,
    )
    ref = scheduler(CogVideoXDDIMScheduler)
    ref.set_timesteps(1)
    (t,) = ref.timesteps
    x_t = torch.randn((1, *SHAPE[1:]), generator=torch.Generator().manual_seed(9))
    x_t = x_t * ref.init_noise_sigma
    c = toy_predict(x_t, t.view(1), text, image)
    u = toy_predict(x_t, t.view(1), negative, image)
    v = c if scale == 1.0 else u + scale * (c - u)
    expected = ref.step(v, t, x_t, eta=0.0).prev_sample
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(c, u)  # the two texts give distinct outputs: the check has teeth


def test_trailing_timesteps_of_the_released_config():
    sampler = CogVideoXSampler(scheduler(CogVideoXDDIMScheduler))
    assert sampler.timesteps(10, torch.device("cpu")).tolist() == [
        999,
        899,
        799,
        699,
        599,
        499,
        399,
        299,
        199,
        99,
    ]


def test_rejects_other_schedulers_and_bad_settings():
    with pytest.raises(TypeError, match="CogVideoXDDIMScheduler"):
        CogVideoXSampler(DDPMScheduler())
    sampler = CogVideoXSampler(scheduler(CogVideoXDDIMScheduler))
    with pytest.raises(ValueError, match=r"guidance_scale=0\.5"):
        run(sampler, [0], [1], 0.5)
    with pytest.raises(ValueError, match="num_inference_steps=0"):  # not the default in disguise
        run(sampler, [0], [1], 1.0, steps=0)
