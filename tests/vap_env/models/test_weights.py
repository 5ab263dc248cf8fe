"""Weights I/O: bit-exact round trips, diffusers-format backbones, source resolution errors."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from vap_env.models import WorldModel, load_world_model
from vap_env.models.weights import CONFIG_FILE, WEIGHTS_FILE, weights_state


def perturb(wm: WorldModel, seed: int = 0) -> None:
    """Give every saved tensor new values (as training would)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in weights_state(wm).values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=g) * 0.01)


def assert_same_state(a: WorldModel, b: WorldModel) -> None:
    sa, sb = weights_state(a), weights_state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_tiny_round_trip_is_bit_exact(tmp_path, chunk_inputs):
    wm = load_world_model("tiny")
    perturb(wm)
    wm.save_pretrained(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / CONFIG_FILE).read_text())
    assert meta["parts"] == ["transformer", "vae", "text_encoder", "controlnet"]
    loaded = load_world_model(tmp_path / "a")
    loaded.save_pretrained(tmp_path / "b")
    again = load_world_model(str(tmp_path / "b"))
    assert_same_state(wm, loaded)
    assert_same_state(loaded, again)
    assert (tmp_path / "a" / WEIGHTS_FILE).read_bytes() == (
        tmp_path / "b" / WEIGHTS_FILE
    ).read_bytes()
    assert again.config.weights == str(tmp_path / "b")
    if os.name == "posix":  # safetensors alone would leave the weights 0600 (owner only)
        mode = (tmp_path / "a" / CONFIG_FILE).stat().st_mode & 0o777
        assert (tmp_path / "a" / WEIGHTS_FILE).stat().st_mode & 0o777 == mode
        umask = os.umask(0)
        os.umask(umask)
        assert mode == 0o666 & ~umask  # what open() gives a new file
    context, skeleton = chunk_inputs(wm, batch=1)

    def frames(model):
        gen = torch.Generator().manual_seed(0)
        return model.generate_chunk(context, skeleton, ["x"], generator=gen, num_inference_steps=1)

    assert torch.equal(frames(wm), frames(again))


def test_half_precision_storage_halves_the_file_and_loads_as_float32(tmp_path, chunk_inputs):
    wm = load_world_model("tiny")
    perturb(wm)
    wm.save_pretrained(tmp_path / "full")
    wm.save_pretrained(tmp_path / "half", dtype="float16")
    full, half = ((tmp_path / d / WEIGHTS_FILE).stat().st_size for d in ("full", "half"))
    assert 0.45 < half / full < 0.55
    loaded = load_world_model(tmp_path / "half")
    for key, tensor in weights_state(loaded).items():
        want = weights_state(wm)[key]
        if want.is_floating_point():
            assert tensor.dtype == torch.float32, key  # cast back to the model's dtype
            assert torch.equal(tensor, want.half().float()), key
        else:
            assert torch.equal(tensor, want), key
    context, skeleton = chunk_inputs(wm, batch=1)

    def frames(model):
        gen = torch.Generator().manual_seed(0)
        return model.generate_chunk(context, skeleton, ["x"], generator=gen, num_inference_steps=2)

    diff = (frames(wm).int() - frames(loaded).int()).abs()  # uint8 frames
    assert 0 < diff.max() <= 3 and diff.float().mean() < 0.1
    with pytest.raises(ValueError, match="'float8' is not one of"):
        wm.save_pretrained(tmp_path / "bad", dtype="float8")


def test_diffusers_directory_loads_as_backbone(tiny_backbone_dir, tiny):
    wm = load_world_model("tiny", backbone=str(tiny_backbone_dir))
    reference = tiny.transformer.state_dict()
    for key, value in wm.transformer.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert torch.equal(wm.vae.encoder.conv_in.conv.weight, tiny.vae.encoder.conv_in.conv.weight)
    assert type(wm.instructions.tokenizer).__name__ == "ByT5Tokenizer"
    # text_offload: T5 is loaded and kept on the CPU, its embeddings equal the resident ones
    offloaded = load_world_model("tiny", backbone=str(tiny_backbone_dir), text_offload=True)
    assert offloaded.text_encoder.device.type == "cpu" and offloaded.instructions.offload
    assert torch.equal(offloaded.encode_text(["pick can"]), wm.encode_text(["pick can"]))


def test_adapter_round_trip_saves_only_controlnet_and_lora(tmp_path, tiny_backbone_dir):
    overrides = {
        "backbone": str(tiny_backbone_dir),
        "lora_rank": 4,
        "lora_alpha": 8.0,
        "trainable": ("controlnet", "lora"),
    }
    wm = load_world_model("tiny", **overrides)
    perturb(wm, seed=1)
    wm.save_pretrained(tmp_path / "adapters")
    keys = set(weights_state(wm))
    assert all(k.startswith("controlnet.") or ".lora_" in k for k in keys)
    assert any(".lora_B." in k for k in keys)
    loaded = load_world_model(tmp_path / "adapters")
    assert loaded.config.lora_rank == 4 and loaded.config.backbone == str(tiny_backbone_dir)
    assert_same_state(wm, loaded)
    # The same weights through the config's `weights` field of a preset.
    via_field = load_world_model("tiny", weights=str(tmp_path / "adapters"), **overrides)
    assert_same_state(wm, via_field)


def test_mismatched_weights_are_rejected(tmp_path, tiny_backbone_dir):
    base = {"backbone": str(tiny_backbone_dir), "trainable": ("controlnet",)}
    load_world_model("tiny", **base).save_pretrained(tmp_path / "w")
    with pytest.raises(KeyError, match="missing"):
        load_world_model("tiny", weights=str(tmp_path / "w"), lora_rank=2, **base)


def test_source_errors_are_clear(tmp_path, tiny_backbone_dir):
    with pytest.raises(KeyError, match="Did you mean 'tiny'"):
        load_world_model("tinyy")
    with pytest.raises(ValueError, match="backbone of a preset"):
        load_world_model(str(tiny_backbone_dir))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_world_model("tiny", backbone=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"transformer/config\.json"):
        load_world_model("tiny", backbone=str(tmp_path / "empty"))
    # A backbone without its T5 or tokenizer would embed instructions meaninglessly: refused.
    import shutil

    for part in ("text_encoder", "tokenizer"):
        partial = tmp_path / f"no-{part}"
        shutil.copytree(tiny_backbone_dir, partial)
        shutil.rmtree(partial / part)
        with pytest.raises(FileNotFoundError, match=rf"lacks \['{part}/"):
            load_world_model("tiny", backbone=str(partial))
    with pytest.raises(FileNotFoundError, match="run that stage first"):
        load_world_model(str(tmp_path / "runs" / "stage-1" / "export"))
    from vap_env.models.config import load_model_preset

    arch = {**load_model_preset("tiny").transformer, "num_layer": 3}
    with pytest.raises(TypeError, match=r"`transformer` has unknown.*Did you mean 'num_layers'"):
        load_world_model("tiny", transformer=arch)
    with pytest.raises(TypeError, match="Did you mean 'lora_rank'"):
        load_world_model("tiny", lora_rnak=4)


def test_offline_hub_id_says_what_to_download(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VAP_BACKBONE_DIR", raising=False)
    with pytest.raises(OSError, match="hf download THUDM/CogVideoX-2b --local-dir") as err:
        load_world_model("cogvideox-2b")
    assert "VAP_BACKBONE_DIR" in str(err.value) and "backbone" in str(err.value)


def test_partial_hub_snapshot_offline_names_what_is_missing(tmp_path, monkeypatch):
    from huggingface_hub import constants

    # What an interrupted `hf download` leaves: a snapshot with model_index.json only.
    repo = tmp_path / "hub-cache" / "models--THUDM--CogVideoX-2b"
    commit = "a" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model_index.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VAP_BACKBONE_DIR", raising=False)
    with pytest.raises(OSError, match=r"cached snapshot .* lacks \['transformer/config\.json'"):
        load_world_model("cogvideox-2b")


def test_offline_world_model_hub_id_says_where_a_backbone_goes(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=r"backbone=: load_world_model\('cogvideox-2b', backbone="):
        load_world_model("THUDM/CogVideoX-2b")


def test_backbone_dir_env_var_is_used_for_hub_ids(tmp_path, monkeypatch, tiny_backbone_dir):
    (tmp_path / "CogVideoX-tiny").symlink_to(tiny_backbone_dir)
    monkeypatch.setenv("VAP_BACKBONE_DIR", str(tmp_path))
    wm = load_world_model("tiny", backbone="THUDM/CogVideoX-tiny")
    assert wm.transformer.config.num_layers == 4


def test_shipped_checkpoint_loads_by_name():
    from vap_env.models.weights import packaged_checkpoints

    assert {"tiny-rt1", "tiny-droid"} <= set(packaged_checkpoints())
    wm = load_world_model("tiny-rt1")
    assert wm.config.name == "tiny" and wm.config.image_layout == "repeat"
    with pytest.raises(
        KeyError, match=r"shipped checkpoint \(.*'tiny-rt1'.*Did you mean 'tiny-rt1'"
    ):
        load_world_model("tiny-rt2")


@pytest.mark.parametrize(
    ("env_config", "checkpoint"), [("rt1", "tiny-rt1"), ("droid", "tiny-droid")]
)
def test_registered_envs_default_to_shipped_checkpoints(env_config, checkpoint):
    """Both env ids load trained weights by default, silently (random ones would warn)."""
    from vap_env.core import resolve_weights
    from vap_env.env import load_env_config

    weights = load_env_config(env_config).weights
    assert weights == checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = resolve_weights(weights)
    manifest = json.loads((Path(path) / "MANIFEST.json").read_text())
    assert manifest["step"] > 0


def test_diverged_or_damaged_weights_are_refused(tmp_path):
    wm = load_world_model("tiny")
    wm.save_pretrained(tmp_path / "ok")
    with torch.no_grad():
        next(wm.controlnet.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"NaN or inf.*diverged"):
        wm.save_pretrained(tmp_path / "nan")
    assert not (tmp_path / "nan" / WEIGHTS_FILE).exists()
    # A NaN written by someone else is refused on load too, naming the file.
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "ok" / WEIGHTS_FILE)
    key = next(k for k in tensors if k.startswith("controlnet."))
    tensors[key] = torch.full_like(tensors[key], float("inf"))
    (tmp_path / "inf").mkdir()
    save_file(tensors, tmp_path / "inf" / WEIGHTS_FILE)
    (tmp_path / "inf" / CONFIG_FILE).write_bytes((tmp_path / "ok" / CONFIG_FILE).read_bytes())
    with pytest.raises(ValueError, match=rf"inf.*{key}"):
        load_world_model(str(tmp_path / "inf"))
    # A truncated file is named, not a bare "header too large".
    data = (tmp_path / "ok" / WEIGHTS_FILE).read_bytes()
    (tmp_path / "inf" / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"weights\.safetensors is not a readable.*truncated"):
        load_world_model(str(tmp_path / "inf"))
    (tmp_path / "inf" / CONFIG_FILE).write_text("{")
    with pytest.raises(ValueError, match=r"world_model\.json is not valid JSON"):
        load_world_model(str(tmp_path / "inf"))
