"""The Accelerate training loop: exact resume, trainable sets, export, LGF in the loop."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from vap_env.models import load_world_model
from vap_env.train.config import TrainConfig, load_train_config
from vap_env.train.lgf import LGFConfig
from vap_env.train.trainer import (
    TRAINABLE_FILE,
    ClipBatch,
    Trainer,
    TrainingModule,
    export_checkpoint,
    micro_batch_generator,
    set_latent_scale,
)


def _cfg(model_dir, out, **changes) -> TrainConfig:
    cfg = TrainConfig(
        name="test",
        stage="diffusion",
        model=str(model_dir),
        output_dir=str(out),
        max_steps=4,
        checkpoint_every=2,
        keep_last=2,
        log_with=None,
        gradient_accumulation_steps=2,
    )
    return dataclasses.replace(cfg, **changes)


def _trainable_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    module = trainer.accelerator.unwrap_model(trainer.model)
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def test_resumed_run_equals_straight_run(micro_model_dir, tmp_path, synthetic_clips):
    # accumulation 2 x 3 batches per epoch: the checkpoint at step 2 sits mid-epoch (epoch 1,
    # batch 1); cosine schedule with warm-up and the LGF loss make every piece of state matter.
    changes = {
        "optim": dataclasses.replace(TrainConfig().optim, lr_schedule="cosine", warmup_steps=1),
        "lgf": LGFConfig(weight=0.5, window=3, projector_hidden=16, random_dim=8),
    }
    data = synthetic_clips(batch_size=1)
    straight = Trainer(_cfg(micro_model_dir, tmp_path / "a", **changes), dataset_factory=data)
    full = straight.train()
    assert full.steps == 4 and len(full.losses) == 4
    assert all(torch.isfinite(torch.tensor(full.losses)))

    first = Trainer(_cfg(micro_model_dir, tmp_path / "b", **changes), dataset_factory=data)
    part = first.train(until=2)
    assert part.steps == 2 and part.export_dir is None
    assert part.checkpoint.name == "checkpoint-00000002"
    del first
    resumed = Trainer(
        _cfg(micro_model_dir, tmp_path / "b", **changes), resume=True, dataset_factory=data
    )
    assert (
        resumed.state.step == 2 and resumed.state.epoch == 1 and resumed.state.batch_in_epoch == 1
    )
    rest = resumed.train()
    assert part.losses + rest.losses == full.losses  # bit-exact, not approximately
    a, b = _trainable_state(straight), _trainable_state(resumed)
    assert a.keys() == b.keys() and any(k.startswith("lgf.projector") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.lr_schedule.get_last_lr() == straight.lr_schedule.get_last_lr()
    # keep_last=2: the checkpoints of steps 2 and 4 remain; the export loads as a world model
    names = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert names == ["checkpoint-00000002", "checkpoint-00000004"]
    wm = load_world_model(str(rest.export_dir))
    exported = dict(wm.transformer.named_parameters())
    trained = resumed.accelerator.unwrap_model(resumed.model).wm.transformer
    assert all(torch.equal(exported[n], p) for n, p in trained.named_parameters())
    # A fresh run into the same directory would mix its checkpoints with these: refused.
    with pytest.raises(FileExistsError, match=r"earlier run \(newest: step 4\): pass --resume"):
        Trainer(_cfg(micro_model_dir, tmp_path / "b", **changes), dataset_factory=data)
    names_after = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert names_after == names


def test_resume_without_checkpoint_is_a_clear_error(micro_model_dir, tmp_path, synthetic_clips):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        Trainer(_cfg(micro_model_dir, tmp_path), resume=True, dataset_factory=synthetic_clips())


def test_real_preset_trains_only_controlnet_and_lora(
    real_small_model_dir, tmp_path, synthetic_clips
):
    cfg = _cfg(
        real_small_model_dir, tmp_path, max_steps=2, checkpoint_every=2, gradient_checkpointing=True
    )
    trainer = Trainer(cfg, dataset_factory=synthetic_clips())
    wm = trainer.wm
    assert wm.gradient_checkpointing and wm.controlnet.gradient_checkpointing
    before = {n: t.detach().clone() for n, t in wm.state_dict().items()}
    text_before = {n: t.detach().clone() for n, t in wm.text_encoder.state_dict().items()}
    result = trainer.train()
    after = wm.state_dict()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed, "training changed nothing"
    allowed = {n for n in before if n.startswith("controlnet.") or ".lora_" in n}
    assert changed <= allowed, sorted(changed - allowed)[:5]
    assert any(n.startswith("controlnet.") for n in changed)
    assert any(".lora_B." in n for n in changed)
    assert all(torch.equal(t, wm.text_encoder.state_dict()[n]) for n, t in text_before.items())
    # the checkpoint holds the trainable tensors only, not the backbone
    from safetensors.torch import load_file

    saved = load_file(str(result.checkpoint / TRAINABLE_FILE))
    assert set(saved) == {f"wm.{n}" for n in allowed if n in dict(wm.named_parameters())}
    # the export is ControlNet + LoRA on top of the backbone directory, and reloads exactly
    reloaded = load_world_model(str(result.export_dir))
    assert reloaded.config.backbone == wm.config.backbone
    for n, t in reloaded.state_dict().items():
        assert torch.equal(t, after[n]), n
    # exporting the step-2 checkpoint afterwards gives the same ControlNet + LoRA model
    again = load_world_model(str(export_checkpoint(result.checkpoint, tmp_path / "again")))
    assert again.config == dataclasses.replace(reloaded.config, weights=again.config.weights)
    for n, t in again.state_dict().items():
        assert torch.equal(t, after[n]), n


def test_vae_stage_trains_the_vae_alone_and_sets_the_latent_scale(
    micro_model_dir, tmp_path, synthetic_clips
):
    cfg = _cfg(
        micro_model_dir,
        tmp_path,
        stage="vae",
        max_steps=2,
        scale_batches=2,
        gradient_accumulation_steps=1,
    )
    trainer = Trainer(cfg, dataset_factory=synthetic_clips(batch_size=1))
    assert trainer.wm.config.trainable == ("vae",)
    before = {n: t.detach().clone() for n, t in trainer.wm.state_dict().items()}
    result = trainer.train()
    after = trainer.wm.state_dict()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(n.startswith("vae.") for n in changed)
    stage1 = load_world_model(str(result.export_dir))
    scale = stage1.vae.config.scaling_factor
    assert scale != 1.0 and stage1.config.vae["scaling_factor"] == scale
    # stage 2 starts from the stage-1 export with the VAE frozen
    cfg2 = _cfg(result.export_dir, tmp_path / "stage2", max_steps=1, checkpoint_every=0)
    stage2 = Trainer(cfg2, dataset_factory=synthetic_clips())
    assert stage2.wm.config.trainable == ("transformer", "controlnet")
    assert not any(p.requires_grad for p in stage2.wm.vae.parameters())
    assert stage2.wm.vae.config.scaling_factor == scale


def test_bad_training_configs(micro_model_dir, real_small_model_dir, tmp_path, synthetic_clips):
    with pytest.raises(ValueError, match=r"stage='vea'.*Did you mean 'vae'"):
        TrainConfig(stage="vea")
    with pytest.raises(ValueError, match=r"remove 'vae' from trainable"):
        TrainConfig(trainable=("transformer", "vae"))
    with pytest.raises(ValueError, match=r"lgf\.weight > 0 in the vae stage"):
        TrainConfig(stage="vae", lgf=LGFConfig(weight=1.0))
    with pytest.raises(ValueError, match="only for models built from their config"):
        Trainer(
            _cfg(real_small_model_dir, tmp_path, stage="vae"), dataset_factory=synthetic_clips()
        )
    with pytest.raises(ValueError, match="text encoder is not supported"):
        Trainer(
            _cfg(micro_model_dir, tmp_path, trainable=("controlnet", "text_encoder")),
            dataset_factory=synthetic_clips(),
        )
    with pytest.raises(ValueError, match=r"lgf\.layer=5"):
        Trainer(
            _cfg(micro_model_dir, tmp_path, lgf=LGFConfig(weight=1.0, layer=5)),
            dataset_factory=synthetic_clips(),
        )


def test_widened_backbone_must_train_its_context_channels(
    micro_model_dir, tmp_path, synthetic_clips
):
    # A text-to-video transformer (in_channels = latent channels) gets zero context channels;
    # ControlNet-only training would leave the context frame unseen for good.
    cfg = load_world_model(micro_model_dir).config
    t2v = dataclasses.replace(cfg, weights=None, transformer={**cfg.transformer, "in_channels": 8})
    load_world_model(t2v, trainable=("controlnet",)).save_pretrained(tmp_path / "t2v")
    with pytest.raises(ValueError, match=r"context frame would never reach.*Add 'patch_embed'"):
        Trainer(_cfg(tmp_path / "t2v", tmp_path / "a"), dataset_factory=synthetic_clips())
    trainer = Trainer(
        _cfg(
            tmp_path / "t2v", tmp_path / "b", trainable=("controlnet", "patch_embed"), max_steps=1
        ),
        dataset_factory=synthetic_clips(),
    )
    trainer.train()
    assert not load_world_model(tmp_path / "b" / "export").ignores_context()


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps one process-wide state and refuses a second mixed precision in it."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_mixed_precision_comes_from_the_launcher_and_fp16_needs_a_gpu(
    micro_model_dir, tmp_path, synthetic_clips, monkeypatch, fresh_accelerate_state
):
    from accelerate.state import AcceleratorState

    # `accelerate launch --mixed_precision bf16` over a config that says "no": the launcher wins.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    trainer = Trainer(_cfg(micro_model_dir, tmp_path / "a"), dataset_factory=synthetic_clips())
    assert trainer.accelerator.mixed_precision == "bf16"
    # The launcher's default ("no", exported whenever accelerate launch runs) leaves the config's.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    AcceleratorState._reset_state(True)
    trainer = Trainer(
        _cfg(micro_model_dir, tmp_path / "c", mixed_precision="bf16"),
        dataset_factory=synthetic_clips(),
    )
    assert trainer.accelerator.mixed_precision == "bf16"
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    AcceleratorState._reset_state(True)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"fp16 does not run on the CPU.*use bf16"):
            Trainer(
                _cfg(micro_model_dir, tmp_path / "b", mixed_precision="fp16"),
                dataset_factory=synthetic_clips(),
            )


def test_latent_cache_matches_direct_encoding(micro_model_dir, synthetic_clips):
    wm = load_world_model(str(micro_model_dir))
    batch = ClipBatch.from_items(next(synthetic_clips()(0)), torch.device("cpu"))
    assert batch.keys == [("train_000002", 0), ("train_000005", 1)]
    direct = TrainingModule(wm, TrainConfig(cache_latents=False)).encode(batch)
    module = TrainingModule(wm, TrainConfig(cache_latents=True))
    cached = module.encode(batch)
    assert len(module.cache) == 2 and module.cache.order == batch.keys
    for name in ("latents", "control", "image", "region"):
        torch.testing.assert_close(
            getattr(direct, name), getattr(cached, name), rtol=1e-5, atol=1e-5
        )
    again = module.encode(batch)  # served from the cache
    assert torch.equal(again.latents, cached.latents) and torch.equal(again.region, cached.region)
    from_cache = next(module.cache.batches(1, 0, 0, 2, torch.device("cpu"), wm.image_latents))
    assert sorted(from_cache.keys) == sorted(batch.keys) and from_cache.context is None
    batch.keys = None
    with pytest.raises(ValueError, match="episode_id"):
        module.encode(batch)


def test_cached_epochs_resume_exactly(micro_model_dir, tmp_path, synthetic_clips):
    # epochs >= 1 come from the cache; the resumed run (at epoch 1) must rebuild it identically
    data = synthetic_clips(batches_per_epoch=2, batch_size=1)
    changes = {"cache_latents": True, "gradient_accumulation_steps": 1, "checkpoint_every": 3}
    straight = Trainer(_cfg(micro_model_dir, tmp_path / "a", **changes), dataset_factory=data)
    full = straight.train(until=5)
    first = Trainer(_cfg(micro_model_dir, tmp_path / "b", **changes), dataset_factory=data)
    part = first.train(until=3)
    resumed = Trainer(
        _cfg(micro_model_dir, tmp_path / "b", **changes), resume=True, dataset_factory=data
    )
    assert (resumed.state.epoch, resumed.state.batch_in_epoch) == (1, 1)
    rest = resumed.train(until=5)
    assert part.losses + rest.losses == full.losses
    assert resumed.module.cache.order == straight.module.cache.order


def test_shipped_presets_load_and_point_at_real_models():
    from vap_env.models import model_presets
    from vap_env.models.config import load_model_preset
    from vap_env.models.weights import packaged_checkpoints
    from vap_env.train.config import load_train_config, train_presets

    names = train_presets()
    assert {"tiny-rt1-vae", "tiny-rt1", "cogvideox-5b-i2v-rt1"} <= set(names)
    configs = {name: load_train_config(name) for name in names}
    vae_exports = {f"runs/{n}/export" for n, c in configs.items() if c.stage == "vae"}
    for name, cfg in configs.items():
        assert cfg.name == name
        # a recipe starts from a model preset, a shipped checkpoint, or the export of one of its
        # shipped VAE stages (tiny: stage 1 VAE, optional VAE refinement passes, then diffusion)
        starts = {*model_presets(), *packaged_checkpoints(), *vae_exports}
        assert cfg.model in starts, (name, cfg.model)
        assert cfg.vae_from in {None, *vae_exports}, (name, cfg.vae_from)
        if cfg.stage == "vae":
            # only from-scratch presets (no pretrained backbone) train their own VAE
            scratch = {n for n in model_presets() if load_model_preset(n).backbone is None}
            assert cfg.model in {*scratch, *packaged_checkpoints(), *vae_exports}, name
    assert load_train_config("configs/train/tiny-rt1.yaml") == load_train_config("tiny-rt1")
    with pytest.raises(KeyError, match="Did you mean 'tiny-rt1'"):
        load_train_config("tiny-rt")


def test_vae_stage_mixes_in_skeleton_videos(micro_model_dir, synthetic_clips):
    from vap_env.train.losses import VAELossConfig, skeleton_mask, vae_loss

    wm = load_world_model(str(micro_model_dir))
    batch = ClipBatch.from_items(next(synthetic_clips()(0)), torch.device("cpu"))
    assert not torch.equal(batch.skeleton, batch.video)
    cfg = TrainConfig(stage="vae", vae=VAELossConfig(skeleton_fraction=0.5))
    got = TrainingModule(wm, cfg)(batch, torch.Generator().manual_seed(0))
    # half of the batch of 2: clip 0 is replaced by its skeleton video, clip 1 stays a scene clip
    mixed = torch.cat([batch.skeleton[:1], batch.video[1:]])
    region = skeleton_mask(
        batch.skeleton, cfg.diffusion.mask_threshold, cfg.diffusion.mask_dilation
    )
    want = vae_loss(wm.vae, mixed, cfg.vae, torch.Generator().manual_seed(0), region)
    torch.testing.assert_close(got["loss"], want["loss"])
    scene_only = TrainingModule(wm, dataclasses.replace(cfg, vae=VAELossConfig()))
    assert not torch.allclose(
        scene_only(batch, torch.Generator().manual_seed(0))["loss"], got["loss"]
    )
    with pytest.raises(ValueError, match=r"skeleton_fraction=1\.0"):
        VAELossConfig(skeleton_fraction=1.0)


def test_vae_from_puts_a_saved_vae_under_another_transformer(
    micro_model_dir, tmp_path, synthetic_clips
):
    donor = load_world_model(str(micro_model_dir))
    base = dataclasses.replace(donor.config, weights=None)  # the micro config, built afresh
    with torch.no_grad():
        for p in donor.vae.parameters():
            p.add_(0.01)
    set_latent_scale(donor, 0.7)
    donor.save_pretrained(tmp_path / "donor")
    deeper = dataclasses.replace(base, transformer={**base.transformer, "num_layers": 3})
    load_world_model(deeper).save_pretrained(tmp_path / "deeper")

    cfg = _cfg(tmp_path / "deeper", tmp_path / "run", max_steps=1, checkpoint_every=0)
    cfg = dataclasses.replace(cfg, vae_from=str(tmp_path / "donor"))
    trainer = Trainer(cfg, dataset_factory=synthetic_clips())
    assert len(trainer.wm.transformer.transformer_blocks) == 3
    export = load_world_model(str(trainer.train().export_dir))
    for (name, got), want in zip(
        export.vae.state_dict().items(), donor.vae.state_dict().values(), strict=True
    ):
        assert torch.equal(got, want), name
    assert export.vae.config.scaling_factor == 0.7 == export.config.vae["scaling_factor"]
    assert len(export.transformer.transformer_blocks) == 3

    other = dataclasses.replace(base, vae={**base.vae, "block_out_channels": [8, 8, 16]})
    load_world_model(other).save_pretrained(tmp_path / "other")
    bad = dataclasses.replace(cfg, vae_from=str(tmp_path / "other"))
    with pytest.raises(ValueError, match=r"block_out_channels=\[8, 8, 16\] there"):
        Trainer(bad, dataset_factory=synthetic_clips())
    with pytest.raises(ValueError, match=r"vae_from=.* in the vae stage"):
        dataclasses.replace(cfg, stage="vae")


def test_export_dtype_stores_half_precision(micro_model_dir, tmp_path, synthetic_clips):
    from safetensors.torch import load_file

    from vap_env.models.weights import WEIGHTS_FILE

    cfg = _cfg(micro_model_dir, tmp_path, max_steps=1, checkpoint_every=0, export_dtype="float16")
    export = Trainer(cfg, dataset_factory=synthetic_clips()).train().export_dir
    dtypes = {t.dtype for t in load_file(str(export / WEIGHTS_FILE)).values()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    assert load_world_model(str(export)).dtype == torch.float32
    with pytest.raises(ValueError, match=r"export_dtype='fp16' is not one of"):
        dataclasses.replace(cfg, export_dtype="fp16")


def test_context_noise_changes_only_the_conditioning(micro_model_dir, synthetic_clips):
    from vap_env.train.losses import DiffusionLossConfig

    wm = load_world_model(str(micro_model_dir))
    batch = ClipBatch.from_items(next(synthetic_clips()(0)), torch.device("cpu"))

    def loss(context_noise: float) -> torch.Tensor:
        cfg = TrainConfig(diffusion=DiffusionLossConfig(context_noise=context_noise))
        return TrainingModule(wm, cfg)(batch, torch.Generator().manual_seed(0))["loss"]

    clean, noisy = loss(0.0), loss(0.5)
    assert torch.equal(noisy, loss(0.5))  # drawn from the training generator: seeded
    assert not torch.allclose(clean, noisy)
    # the noise is drawn after the diffusion noise and timesteps, so those stay the same: a tiny
    # std gives nearly the clean loss, which a shifted random stream would not
    torch.testing.assert_close(loss(1e-6), clean, rtol=1e-4, atol=1e-6)


def test_every_micro_batch_draws_its_own_noise(micro_model_dir, tmp_path, synthetic_clips):
    # Accumulated micro-batches average their gradients: drawn from one generator state, they
    # would share noise and timesteps and the accumulation would add nothing.
    trainer = Trainer(
        _cfg(micro_model_dir, tmp_path, max_steps=2, checkpoint_every=0),
        dataset_factory=synthetic_clips(batch_size=1),
    )
    seen: list[tuple[int, torch.Tensor]] = []

    def record(module, args):
        gen = args[1]
        probe = torch.Generator()
        probe.set_state(gen.get_state())  # the draws the micro-batch is about to make
        seen.append((gen.initial_seed(), torch.randn(16, generator=probe)))

    handle = trainer.model.register_forward_pre_hook(record)
    try:
        trainer.train(until=2)
    finally:
        handle.remove()
    # 2 steps x 2 micro-batches, seeded by their global micro-batch index (step * accum + micro)
    expected = [micro_batch_generator(trainer.cfg.seed, k, 0).initial_seed() for k in range(4)]
    assert [seed for seed, _ in seen] == expected
    draws = [d for _, d in seen]
    assert all(not torch.equal(a, b) for i, a in enumerate(draws) for b in draws[i + 1 :])
    # and per process: every (micro-batch, process) coordinate has its own generator
    grid = {
        micro_batch_generator(0, k, rank).initial_seed() for k in range(64) for rank in range(4)
    }
    assert len(grid) == 64 * 4
    first = micro_batch_generator(0, 0, 0)
    assert torch.equal(
        torch.randn(4, generator=first), torch.randn(4, generator=micro_batch_generator(0, 0, 0))
    )


def test_resume_refuses_a_changed_config_and_keeps_the_saved_one(
    micro_model_dir, tmp_path, synthetic_clips, capsys
):
    data = synthetic_clips(batch_size=1)
    cfg = _cfg(micro_model_dir, tmp_path, gradient_accumulation_steps=1, checkpoint_every=1)
    Trainer(cfg, dataset_factory=data).train(until=1)
    assert re.search(r"training on 1 process \((cpu|cuda)\)", capsys.readouterr().out)
    saved = (tmp_path / "train_config.yaml").read_bytes()
    changed = dataclasses.replace(
        cfg,
        optim=dataclasses.replace(cfg.optim, learning_rate=1e-2),
        batch_size=2,
        max_steps=9,  # allowed: not listed
    )
    with pytest.raises(ValueError) as err:
        Trainer(changed, resume=True, dataset_factory=data)
    message = str(err.value)
    assert "optim.learning_rate: 0.0001 -> 0.01" in message and "batch_size: 1 -> 2" in message
    assert "max_steps" not in message.split(". Revert")[0]  # listed only among what may change
    assert "--output-dir NEW_DIR" in message
    assert (tmp_path / "train_config.yaml").read_bytes() == saved
    # what does not change the trajectory may change; the saved config then records it
    harmless = dataclasses.replace(
        cfg, max_steps=2, log_every=3, keep_last=5, checkpoint_every=0, name="renamed"
    )
    resumed = Trainer(harmless, resume=True, dataset_factory=data)
    assert "resuming renamed from checkpoint step 1" in capsys.readouterr().out
    assert resumed.train().steps == 2
    assert load_train_config(tmp_path / "train_config.yaml").log_every == 3


def test_resume_takes_the_same_paths_written_otherwise_and_refuses_another_precision(
    micro_model_dir, tmp_path, synthetic_clips, monkeypatch, fresh_accelerate_state
):
    data = synthetic_clips(batch_size=1)
    cfg = _cfg(micro_model_dir, tmp_path, gradient_accumulation_steps=1, checkpoint_every=1)
    Trainer(cfg, dataset_factory=data).train(until=1)
    # the same model directory, relative and with a trailing "/": not a change
    monkeypatch.chdir(micro_model_dir.parent)
    same = dataclasses.replace(cfg, model=f"{micro_model_dir.name}/")
    Trainer(same, resume=True, dataset_factory=data)
    # a launcher's precision is not in the config; the checkpoint records the one in effect
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with pytest.raises(ValueError, match=r"mixed precision 'no', this run has 'bf16'"):
        Trainer(cfg, resume=True, dataset_factory=data)


def test_extending_a_decaying_schedule_follows_the_longer_schedule_from_there(
    micro_model_dir, tmp_path, synthetic_clips
):
    # a finished 2-step cosine run extended to 4: the old schedule ended at lr 0; the resumed
    # steps use the 4-step schedule's rates for steps 3 and 4, as a 4-step run does there
    optim = dataclasses.replace(TrainConfig().optim, lr_schedule="cosine")
    data = synthetic_clips(batch_size=1)
    short = _cfg(micro_model_dir, tmp_path / "a", optim=optim, gradient_accumulation_steps=1)
    Trainer(dataclasses.replace(short, max_steps=2), dataset_factory=data).train()
    with pytest.warns(UserWarning, match=r"max_steps 2 -> 4 .* \(0 -> 5e-05 at step 3\)"):
        extended = Trainer(short, resume=True, dataset_factory=data)
    rest = extended.train()
    straight = Trainer(
        dataclasses.replace(short, output_dir=str(tmp_path / "b")), dataset_factory=data
    )
    full = straight.train()
    assert rest.lrs == full.lrs[2:] and rest.lrs[0] == pytest.approx(optim.learning_rate / 2)


def test_an_interrupted_run_says_where_it_stopped(micro_model_dir, tmp_path, synthetic_clips):
    clips = synthetic_clips(batch_size=1)  # 3 batches an epoch

    def interrupted(epoch: int):
        if epoch == 1:
            raise KeyboardInterrupt  # Ctrl-C while step 4 reads its batch
        return clips(epoch)

    cfg = _cfg(micro_model_dir, tmp_path, gradient_accumulation_steps=1, checkpoint_every=2)
    trainer = Trainer(cfg, dataset_factory=interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.stop_message() == (
        "stopped at step 3; newest complete checkpoint: step 2 (resume with --resume)"
    )
    fresh = Trainer(
        dataclasses.replace(cfg, output_dir=str(tmp_path / "b"), checkpoint_every=5),
        dataset_factory=interrupted,
    )
    with pytest.raises(KeyboardInterrupt):
        fresh.train()
    assert fresh.stop_message() == "stopped at step 3; no checkpoint yet"


def test_any_kept_checkpoint_exports_as_a_world_model(
    micro_model_dir, tmp_path, synthetic_clips, monkeypatch
):
    from safetensors.torch import load_file

    from vap_env.models.weights import WEIGHTS_FILE

    lgf = LGFConfig(weight=0.5, window=3, projector_hidden=16, random_dim=8)  # lgf.* not exported
    cfg = _cfg(micro_model_dir, tmp_path / "run", lgf=lgf, log_with=None)
    result = Trainer(cfg, dataset_factory=synthetic_clips(batch_size=1)).train()
    ckpts = tmp_path / "run" / "checkpoints"
    last = export_checkpoint(ckpts / "checkpoint-00000004")
    assert last == tmp_path / "run" / "export-00000004"
    a, b = load_file(str(last / WEIGHTS_FILE)), load_file(str(result.export_dir / WEIGHTS_FILE))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (last / "world_model.json").read_text() == (
        result.export_dir / "world_model.json"
    ).read_text()
    from vap_env.cli import main as cli_main

    out = tmp_path / "step2"
    assert (
        cli_main(
            [
                "train",
                "export",
                "--checkpoint",
                str(ckpts / "checkpoint-00000002"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    earlier = load_file(str(out / WEIGHTS_FILE))
    assert not all(torch.equal(earlier[k], a[k]) for k in a)  # step 2 is another model
    with pytest.raises(FileExistsError, match="export-00000004' exists"):
        export_checkpoint(ckpts / "checkpoint-00000004")
    with pytest.raises(ValueError, match="not a complete training checkpoint"):
        export_checkpoint(tmp_path / "run")
    with monkeypatch.context() as m:  # the config's relative paths hold from the training's cwd
        import yaml

        config = tmp_path / "run" / "train_config.yaml"
        saved = config.read_text()
        config.write_text(yaml.safe_dump({**yaml.safe_load(saved), "vae_from": "runs/vae/export"}))
        m.chdir(tmp_path)
        with pytest.raises(FileNotFoundError, match=r"vae_from: runs/vae/export, a path relative"):
            export_checkpoint(ckpts / "checkpoint-00000002", tmp_path / "y")
        config.write_text(saved)
    # a model built from its config redraws its frozen parts from the training device's generator
    with pytest.raises(ValueError, match=r"trained on cpu.*\(--device cpu\), not on cuda"):
        export_checkpoint(ckpts / "checkpoint-00000002", tmp_path / "x", device="cuda")
    # what the loaders say when handed a checkpoint or a run directory instead of an export
    with pytest.raises(FileNotFoundError, match="vap-env train export --checkpoint"):
        load_world_model(str(ckpts / "checkpoint-00000002"))
    with pytest.raises(FileNotFoundError, match=r"run directory: its world model is .*export'"):
        load_world_model(str(tmp_path / "run"))
