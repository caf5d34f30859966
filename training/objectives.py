"""Training objectives: how a row of shard tokens becomes model inputs, an attention
mask and targets, and the loss over those targets.

Every objective takes `tokens` [B, T+1] (a shard row: inputs are `[:-1]`, next-token
targets `[1:]`) and optional `segment_ids` [B, T+1] (the document of each token). With
segment ids, attention never crosses a document boundary, whatever the objective.
Targets use -100 for positions that carry no loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -100


@dataclass
class Batch:
    inputs: torch.Tensor  # [B, T] token ids fed to the model
    targets: torch.Tensor  # [B, T] token ids to predict, IGNORE where there is no loss
    attn_mask: torch.Tensor | None  # [B, 1, T, T] bool, True = may attend; see Transformer.forward
    is_causal: bool


def same_segment_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] bool: query i may attend to key j only within its own document."""
    return (segment_ids[:, :, None] == segment_ids[:, None, :]).unsqueeze(1)


class Objective:
    name: str

    def prepare(
        self,
        tokens: torch.Tensor,
        segment_ids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Batch:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the positions with a target; 0 if there are none (a
        batch where masking picked nothing must not turn the loss into NaN)."""
        total = F.cross_entropy(
            logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum"
        )
        return total / (targets != IGNORE).sum().clamp(min=1)


class CausalLM(Objective):
    """Next-token prediction; with segment ids, a block-diagonal causal mask."""

    name = "causal_lm"

    def prepare(self, tokens, segment_ids=None, generator=None) -> Batch:
        mask = None if segment_ids is None else same_segment_mask(segment_ids[:, :-1])
        return Batch(tokens[:, :-1], tokens[:, 1:], mask, is_causal=True)


class PrefixLM(Objective):
    """Bidirectional attention over a prefix, causal after it; loss on the suffix only.

    The prefix length is drawn per row uniformly from [1, T-1], or fixed at
    `prefix_fraction` of T when that is given.
    """

    name = "prefix_lm"

    def __init__(self, prefix_fraction: float | None = None):
        if prefix_fraction is not None and not 0.0 < prefix_fraction < 1.0:
            raise ValueError(f"prefix_fraction must be in (0, 1), got {prefix_fraction}")
        self.prefix_fraction = prefix_fraction

    def prefix_lengths(self, batch_size: int, T: int, generator) -> torch.Tensor:
        if self.prefix_fraction is not None:
            return torch.full((batch_size,), max(1, int(T * self.prefix_fraction)))
        return torch.randint(1, T, (batch_size,), generator=generator)

    def prepare(self, tokens, segment_ids=None, generator=None) -> Batch:
        inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
        B, T = inputs.shape
        prefix = self.prefix_lengths(B, T, generator).to(tokens.device)[:, None]
        position = torch.arange(T, device=tokens.device)
        # Key j is visible to query i if j is in the prefix or j <= i.
        mask = (position[None, None, :] < prefix[:, :, None]) | (
            position[None, None, :] <= position[None, :, None]
        )
        mask = mask.unsqueeze(1)
        if segment_ids is not None:
            mask = mask & same_segment_mask(segment_ids[:, :-1])
        # Position i predicts token i+1: inside the prefix that token is already visible.
        targets[position[None, :] < prefix - 1] = IGNORE
        return Batch(inputs, targets, mask, is_causal=False)


class MaskedLM(Objective):
    """BERT-style: `mask_prob` of positions are chosen; of those 80% become `mask_id`,
    10% a random token, 10% stay unchanged. Bidirectional; loss on the chosen positions."""

    name = "masked_lm"

    def __init__(self, mask_id: int, vocab_size: int, mask_prob: float = 0.15):
        if not 0 <= mask_id < vocab_size:
            raise ValueError(f"mask_id {mask_id} is outside the vocabulary of {vocab_size}")
        self.mask_id, self.vocab_size, self.mask_prob = mask_id, vocab_size, mask_prob

    def prepare(self, tokens, segment_ids=None, generator=None) -> Batch:
        original = tokens[:, :-1]  # keep T positions, like the causal objectives
        draw = torch.rand((*original.shape, 2), generator=generator).to(tokens.device)
        chosen, replace = draw[..., 0] < self.mask_prob, draw[..., 1]
        random_ids = torch.randint(self.vocab_size, original.shape, generator=generator)
        inputs = torch.where(chosen & (replace < 0.8), self.mask_id, original)
        inputs = torch.where(chosen & (replace >= 0.9), random_ids.to(tokens.device), inputs)
        targets = torch.where(chosen, original, IGNORE)
        mask = None if segment_ids is None else same_segment_mask(segment_ids[:, :-1])
        return Batch(inputs, targets, mask, is_causal=False)


OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (CausalLM, PrefixLM, MaskedLM)}


def make_objective(name: str, **kwargs) -> Objective:
    """The objective called name, e.g. make_objective("masked_lm", mask_id=3, vocab_size=8192)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](**kwargs)
