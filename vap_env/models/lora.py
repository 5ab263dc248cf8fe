"""LoRA on the main transformer's attention projections, through peft (diffusers' ``add_adapter``).

peft initialises LoRA's B matrices to zero, so adding the adapter leaves the output unchanged; its
parameters are the ones named ``...lora_A.default.weight`` / ``...lora_B.default.weight``.
"""

from __future__ import annotations

from diffusers import CogVideoXTransformer3DModel
from peft import LoraConfig
from torch import nn

# The attention projections of every CogVideoX block (VAP fine-tunes these).
LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
ADAPTER_NAME = "default"


def add_lora(
    transformer: CogVideoXTransformer3DModel, rank: int, alpha: float, dropout: float = 0.0
) -> None:
    """Inject a LoRA adapter of ``rank`` into ``transformer`` (in place, via peft)."""
    if rank < 1:
        raise ValueError(f"LoRA rank={rank} must be >= 1")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(LORA_TARGETS),
        init_lora_weights=True,
    )
    transformer.add_adapter(config, adapter_name=ADAPTER_NAME)


def is_lora_parameter(name: str) -> bool:
    """Whether a transformer parameter / state-dict name belongs to the LoRA adapter."""
    return ".lora_A." in name or ".lora_B." in name


def lora_parameters(transformer: nn.Module) -> list[nn.Parameter]:
    """The LoRA parameters of ``transformer`` (empty without an adapter)."""
    return [p for n, p in transformer.named_parameters() if is_lora_parameter(n)]
