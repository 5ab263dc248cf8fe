"""Instruction embeddings: T5 encoder states, computed once per instruction and cached.

As in diffusers' CogVideoX pipelines, instructions are padded / truncated to the transformer's
``max_text_seq_length`` (226 for the released models) and encoded without an attention mask: that is
the input the pretrained transformer was trained with. The real presets use the backbone's
T5-v1.1-XXL; ``tiny`` uses a small T5 with the byte-level ByT5 tokenizer, which needs no files.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import T5EncoderModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase


class InstructionEncoder:
    """Encode instructions to (B, L, D) embeddings with a per-instruction cache.

    Args:
        model: the T5 encoder (frozen).
        tokenizer: its tokenizer.
        max_length: L, the transformer's text sequence length.
        device: where embeddings are returned (the world model's device).
        dtype: dtype of the returned embeddings.
        offload: keep the encoder on the CPU and move only the embeddings (saves its memory on the
            accelerator; with the cache, each distinct instruction is encoded once).
    """

    def __init__(
        self,
        model: T5EncoderModel,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        device: torch.device,
        dtype: torch.dtype,
        offload: bool = False,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.device = torch.device(device)
        self.dtype = dtype
        self.offload = offload
        self.model.to(torch.device("cpu") if offload else self.device)
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def cache_size(self) -> int:
        """Number of distinct instructions encoded so far."""
        return len(self._cache)

    def clear_cache(self) -> None:
        """Forget cached embeddings (after the encoder's weights change)."""
        self._cache.clear()

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> torch.Tensor:  # -> (B, L, D)
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        ).input_ids
        model_device = next(self.model.parameters()).device
        states = self.model(ids.to(model_device))[0]
        return states.to(device=self.device, dtype=self.dtype)

    def __call__(self, instructions: Sequence[str]) -> torch.Tensor:  # -> (B, L, D)
        """Embeddings of ``instructions`` (B, L, D), each new instruction encoded once."""
        if isinstance(instructions, str) or not all(isinstance(s, str) for s in instructions):
            raise TypeError(
                f"instructions must be a list of strings (one per batch item), got {instructions!r}"
            )
        for text in instructions:
            if text not in self._cache:
                # One instruction per encoder call: its embedding must not depend on which batch
                # it first arrived in (batched generation == per-item generation, bit for bit).
                self._cache[text] = self._encode([text])[0]
        return torch.stack([self._cache[s] for s in instructions])
