"""WorldModel on the tiny preset: ControlNet / LoRA / widening invariants, generation, input errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from vap_env.models import WorldModel, load_world_model

STEPS = 2  # generation tests check plumbing, not quality


def backbone_output(wm: WorldModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The diffusers transformer's own forward on the same inputs (no ControlNet)."""
    x = torch.cat([inputs["noisy_latents"], inputs["image_latents"]], dim=2)
    f, (h, w) = x.shape[1], x.shape[-2:]
    return wm.transformer(
        hidden_states=x,
        encoder_hidden_states=inputs["text_embeds"],
        timestep=inputs["timesteps"],
        image_rotary_emb=wm.rotary_embeddings(f, h, w),
        return_dict=False,
    )[0]


@torch.no_grad()
def test_zero_init_controlnet_gives_the_backbone_output_exactly(tiny, latent_inputs):
    inputs = latent_inputs(tiny, batch=2)
    out = tiny.predict(**inputs)
    assert out.shape == inputs["noisy_latents"].shape
    assert torch.equal(out, backbone_output(tiny, inputs))


@torch.no_grad()
def test_trained_controlnet_changes_the_output_and_scale_zero_removes_it(latent_inputs):
    wm = load_world_model("tiny")
    for module in (wm.controlnet.control_embed, *wm.controlnet.out_projections):
        torch.nn.init.normal_(module.weight, std=0.02)
    inputs = latent_inputs(wm, batch=1)
    reference = backbone_output(wm, inputs)
    assert not torch.allclose(wm.predict(**inputs), reference)
    assert torch.equal(wm.predict(**inputs, control_scale=0.0), reference)
    # The skeleton latents now steer the output.
    other = dict(inputs, control_latents=torch.randn_like(inputs["control_latents"]))
    assert not torch.allclose(wm.predict(**other), wm.predict(**inputs))


@torch.no_grad()
def test_lora_starts_as_identity_and_only_controlnet_and_lora_train(latent_inputs):
    wm = load_world_model("tiny", lora_rank=4, lora_alpha=4.0, trainable=("controlnet", "lora"))
    inputs = latent_inputs(wm, batch=1)
    assert torch.equal(wm.predict(**inputs), backbone_output(wm, inputs))

    trainable = {id(p) for p in wm.trainable_parameters()}
    names = {n for n, p in wm.named_parameters() if id(p) in trainable}
    lora = {n for n in names if n.startswith("transformer.")}
    assert names - lora == {n for n, _ in wm.controlnet.named_parameters(prefix="controlnet")}
    suffixes = {n.split(".attn1.")[1] for n in lora}
    assert suffixes == {
        f"{target}.lora_{ab}.default.weight"
        for target in ("to_q", "to_k", "to_v", "to_out.0")
        for ab in "AB"
    }
    assert len(lora) == 4 * 2 * wm.transformer.config.num_layers
    # requires_grad agrees with trainable_parameters(); the text encoder is frozen.
    assert {id(p) for p in wm.parameters() if p.requires_grad} == trainable
    assert not any(p.requires_grad for p in wm.text_encoder.parameters())


def test_tiny_trains_the_whole_transformer_and_controlnet(tiny):
    trainable = {id(p) for p in tiny.trainable_parameters()}
    expected = {id(p) for p in [*tiny.transformer.parameters(), *tiny.controlnet.parameters()]}
    assert trainable == expected
    assert not any(p.requires_grad for p in tiny.vae.parameters())


@torch.no_grad()
def test_text_to_video_backbone_is_widened_with_zero_channels(latent_inputs):
    t2v = {"in_channels": 8}  # = latent_channels: a text-to-video transformer like CogVideoX-2B
    base = load_world_model("tiny")
    cfg = base.config
    wm = load_world_model(cfg, transformer={**cfg.transformer, **t2v})
    assert wm.widened and wm.transformer.config.in_channels == 16
    inputs = latent_inputs(wm, batch=1)
    blank = dict(inputs, image_latents=torch.zeros_like(inputs["image_latents"]))
    # The new input channels are zero: the context latent cannot change the output at init ...
    assert torch.equal(wm.predict(**inputs), wm.predict(**blank))
    # ... and the first channels are the original ones.
    weight = wm.transformer.patch_embed.proj.weight
    assert torch.count_nonzero(weight[:, 8:]) == 0 and torch.count_nonzero(weight[:, :8]) > 0
    assert wm.ignores_context() and not base.ignores_context()
    weight[0, 8, 0, 0] = 1e-3  # what one training step of patch_embed does
    assert not wm.ignores_context()


def test_weights_that_never_trained_the_context_channels_warn(tmp_path):
    cfg = load_world_model("tiny").config
    t2v = {**cfg.transformer, "in_channels": 8}
    # What a cogvideox-5b-i2v-style run (ControlNet + LoRA only) on a text-to-video backbone saves.
    load_world_model(cfg, transformer=t2v, trainable=("controlnet",)).save_pretrained(
        tmp_path / "a"
    )
    with pytest.warns(UserWarning, match="ignore the context frame.*patch_embed in trainable"):
        load_world_model(tmp_path / "a")
    trained = load_world_model(cfg, transformer=t2v, trainable=("controlnet", "patch_embed"))
    with torch.no_grad():
        trained.transformer.patch_embed.proj.weight[:, 8:] += 1e-3
    trained.save_pretrained(tmp_path / "b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not load_world_model(tmp_path / "b").ignores_context()


def test_generate_chunk_shapes_and_determinism(tiny, chunk_inputs):
    context, skeleton = chunk_inputs(tiny, batch=1)

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return tiny.generate_chunk(
            context, skeleton, ["pick coke can"], generator=gen, num_inference_steps=STEPS
        )

    a, b, c = run(0), run(0), run(1)
    k = tiny.config.chunk_frames
    assert a.shape == (1, k, tiny.config.height, tiny.config.width, 3)
    assert a.dtype == torch.uint8 and a.device.type == "cpu"
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("overrides", "guidance"),
    [({}, 1.0), ({"scheduler": "dpm"}, 2.0)],
    ids=["ddim", "dpm+guidance"],
)
def test_batched_generation_matches_per_item_generation(chunk_inputs, overrides, guidance):
    """Same per-item randomness; the floats agree up to kernel rounding (see test_sampler for exact)."""
    wm = load_world_model("tiny", **overrides)
    context, skeleton = chunk_inputs(wm, batch=2, seed=3)
    instructions = ["pick coke can", "open top drawer"]
    seeds = [11, 12]
    kwargs = {"num_inference_steps": STEPS, "guidance_scale": guidance}
    batched = wm.generate_chunk(
        context,
        skeleton,
        instructions,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        **kwargs,
    )
    singles = [
        wm.generate_chunk(
            context[i : i + 1],
            skeleton[i : i + 1],
            instructions[i : i + 1],
            generator=torch.Generator().manual_seed(seed),
            **kwargs,
        )
        for i, seed in enumerate(seeds)
    ]
    # CPU BLAS / oneDNN pick different blockings for different batch sizes, so the float results
    # differ in the last bits (~1e-6) and a rare pixel rounds to the neighbouring uint8 level.
    diff = (batched.int() - torch.cat(singles).int()).abs()
    assert diff.max() <= 1
    assert diff.float().mean() < 0.01
    # Different seeds (and inputs) per item: the items are not copies of each other.
    assert not torch.equal(batched[0], batched[1])


def test_accepts_torch_inputs_and_text_is_cached(tiny, chunk_inputs):
    context, skeleton = chunk_inputs(tiny, batch=1)
    gen = torch.Generator().manual_seed(0)
    from_np = tiny.generate_chunk(context, skeleton, ["x"], generator=gen, num_inference_steps=1)
    gen = torch.Generator().manual_seed(0)
    from_torch = tiny.generate_chunk(
        torch.from_numpy(context),
        torch.from_numpy(skeleton),
        ["x"],
        generator=gen,
        num_inference_steps=1,
    )
    assert torch.equal(from_np, from_torch)
    before = tiny.instructions.cache_size
    first = tiny.encode_text(["place the apple in the drawer"])
    assert tiny.instructions.cache_size == before + 1
    assert torch.equal(tiny.encode_text(["place the apple in the drawer"]), first)
    assert tiny.instructions.cache_size == before + 1


@torch.no_grad()
def test_encode_decode_shapes(tiny):
    frames = torch.rand(2, 9, 3, 64, 80) * 2 - 1
    latents = tiny.encode_video(frames)
    assert latents.shape == (2, 3, tiny.latent_channels, 16, 20)
    assert tiny.decode_latents(latents).shape == (2, 9, 3, 64, 80)
    with pytest.raises(ValueError, match="4k\\+1"):
        tiny.encode_video(frames[:, :8])
    # A batch of one runs the oneDNN kernels a larger batch gets (_conv3d_batch1_onednn): the same
    # numbers as item 0 of the batch, without computing a padded copy.
    torch.testing.assert_close(tiny.encode_video(frames[:1]), latents[:1], rtol=0, atol=0)
    torch.testing.assert_close(
        tiny.decode_latents(latents[:1]), tiny.decode_latents(latents)[:1], rtol=0, atol=0
    )
    sampled = tiny.encode_video(frames[:1], sample=True, generator=torch.Generator().manual_seed(0))
    again = tiny.encode_video(frames[:1], sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, again) and not torch.equal(sampled, latents[:1])


@torch.no_grad()
@pytest.mark.parametrize("num_frames", [1, 2, 3, 4, 5, 6, 7, 9])
def test_encode_video_takes_4k_plus_1_frames(tiny, num_frames):
    frames = torch.rand(1, num_frames, 3, 16, 16) * 2 - 1
    if (num_frames - 1) % 4:
        with pytest.raises(ValueError, match=rf"^{num_frames} frames: .*4k\+1"):
            tiny.encode_video(frames)
    else:
        latents = tiny.encode_video(frames)
        assert latents.shape == (1, (num_frames - 1) // 4 + 1, tiny.latent_channels, 4, 4)


def test_bad_chunk_inputs_raise_clear_errors(tiny, chunk_inputs):
    context, skeleton = chunk_inputs(tiny, batch=1)
    with pytest.raises(TypeError, match="uint8"):
        tiny.generate_chunk(context.astype(np.float32), skeleton, ["x"])
    with pytest.raises(ValueError, match="chunk_frames \\+ 1 frames"):
        tiny.generate_chunk(context, skeleton[:, :8], ["x"])
    with pytest.raises(ValueError, match="expected \\(B, 64, 80, 3\\)"):
        tiny.generate_chunk(context[:, :32], skeleton, ["x"])
    with pytest.raises(ValueError, match="list of 1 strings"):
        tiny.generate_chunk(context, skeleton, ["x", "y"])
    with pytest.raises(ValueError, match=r"one torch\.Generator per batch item"):
        gens = [torch.Generator(), torch.Generator()]
        tiny.generate_chunk(context, skeleton, ["x"], generator=gens)


def test_gradients_reach_trainable_parts_and_checkpointing_does_not_change_them(latent_inputs):
    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        wm = load_world_model(
            "tiny",
            lora_rank=2,
            trainable=("controlnet", "lora"),
            gradient_checkpointing=checkpointing,
        )
        # One "training step" worth of non-zero ControlNet outputs, so gradients reach its blocks.
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for out in wm.controlnet.out_projections:
                out.weight.copy_(torch.randn(out.weight.shape, generator=g) * 0.02)
        wm.train()
        loss = wm.predict(**latent_inputs(wm, batch=1)).square().mean()
        loss.backward()
        assert all(p.grad is None for p in wm.vae.parameters())
        return {n: p.grad for n, p in wm.named_parameters() if p.requires_grad}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        assert grad is not None, name
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for n, g in plain.items() if "controlnet.blocks" in n)
    assert any(g.abs().sum() > 0 for n, g in plain.items() if "lora_A" in n or "lora_B" in n)


def test_construction_is_deterministic_under_the_config_seed():
    def lora_a(seed: int) -> torch.Tensor:
        wm = load_world_model("tiny", lora_rank=2, trainable=("lora",), seed=seed)
        return next(p for n, p in wm.transformer.named_parameters() if "lora_A" in n).detach()

    torch.manual_seed(123)  # the global RNG must not matter
    a = lora_a(0)
    torch.manual_seed(456)
    assert torch.equal(a, lora_a(0))
    assert not torch.equal(a, lora_a(1))


@pytest.mark.parametrize("layout", ["first", "repeat"])
def test_image_latent_layouts(layout):
    wm = load_world_model("tiny", image_layout=layout)
    ctx = torch.randn(2, wm.latent_channels, *wm.latent_size)
    image = wm.image_latents(ctx, 3)  # (2, 3, C, h, w)
    assert image.shape == (2, 3, wm.latent_channels, *wm.latent_size)
    assert torch.equal(image[:, 0], ctx)
    if layout == "first":  # CogVideoX-5B-I2V: zeros after the context frame
        assert not image[:, 1:].any()
    else:
        assert torch.equal(image[:, 1], ctx) and torch.equal(image[:, 2], ctx)


def test_vae_convolutions_keep_their_weights_and_pickle(tiny):
    """The batch-1 oneDNN path swaps the VAE convolutions' class, nothing else."""
    import pickle

    from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXSafeConv3d

    convs = [m for m in tiny.vae.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs and all(isinstance(m, CogVideoXSafeConv3d) for m in convs)
    assert all(type(m).__name__ == "_Batch1OneDNNSafeConv3d" for m in convs)
    again = pickle.loads(pickle.dumps(tiny.vae))
    assert again.state_dict().keys() == tiny.vae.state_dict().keys()
    frames = torch.rand(1, 5, 3, 64, 80) * 2 - 1
    with torch.no_grad():
        fast = tiny.encode_video(frames)
    with torch.enable_grad():  # training: the padded batch on the reference kernels
        slow = tiny.encode_video(frames.requires_grad_(True))
    torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=1e-5)
