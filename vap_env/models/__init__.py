"""The world model: CogVideoX backbone + skeleton ControlNet + LoRA, its sampler, presets and weights.

    from vap_env.models import load_world_model
    wm = load_world_model("tiny")                      # preset | saved directory | hub id
    frames = wm.generate_chunk(context, skeleton, ["pick coke can"])   # (B, K, H, W, 3) uint8

One module per part: ``config`` (WorldModelConfig), ``backbone`` (diffusers CogVideoX parts, hub /
directory resolution, image-to-video widening, geometry checks), ``controlnet``, ``lora`` (peft),
``text`` (cached T5 instruction embeddings), ``sampler`` (the denoising loop), ``world_model``
(WorldModel: predict / encode / decode / generate_chunk), ``weights`` (safetensors I/O,
load_world_model).
"""

from vap_env.models.config import WorldModelConfig, load_model_preset, model_presets
from vap_env.models.controlnet import SkeletonControlNet
from vap_env.models.sampler import CogVideoXSampler
from vap_env.models.text import InstructionEncoder
from vap_env.models.weights import load_world_model, save_world_model
from vap_env.models.world_model import WorldModel

__all__ = [
    "CogVideoXSampler",
    "InstructionEncoder",
    "SkeletonControlNet",
    "WorldModel",
    "WorldModelConfig",
    "load_model_preset",
    "load_world_model",
    "model_presets",
    "save_world_model",
]
