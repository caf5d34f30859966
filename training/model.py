"""A decoder-only transformer in plain PyTorch, readable in one sitting.

Llama architecture: RMSNorm before each sublayer, rotary position embeddings, SwiGLU MLP,
grouped-query attention, optional tied input/output embeddings, attention through
`F.scaled_dot_product_attention`. Parameter names and the rotary layout (HF's
"rotate_half": the two halves of each head dimension are paired) follow Hugging Face's
`LlamaForCausalLM`, so exporting (training/export.py) is a pure rename of tensors.

A trained model is stored as a directory holding `model.pt` (a plain state dict) and
`model_config.json` (the `ModelConfig`): `save_model` / `load_model`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "model_config.json"


@dataclass
class ModelConfig:
    vocab_size: int = 32000
    dim: int = 288
    n_layers: int = 6
    n_heads: int = 6
    n_kv_heads: int | None = None  # grouped-query attention; None = n_heads (plain MHA)
    hidden_dim: int | None = None  # SwiGLU width; None = llama's 2/3 * 4 * dim, rounded up
    multiple_of: int = 32  # rounding of the default hidden_dim
    max_seq_len: int = 256
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.hidden_dim is None:
            hidden = int(2 * 4 * self.dim / 3)
            self.hidden_dim = self.multiple_of * math.ceil(hidden / self.multiple_of)
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward), the one formula used for MFU.

        6 * N + 12 * n_layers * dim * seq_len (PaLM, appendix B). N counts the weights used
        in matmuls: the attention and MLP projections and the output head (also when tied
        to the embedding); not the embedding lookup nor the norms. The second term is
        attention's QK^T and AV products, counted in full even when causal. Computed from
        the config, so it holds when ZeRO-3 has partitioned the parameters away.
        """
        kv_dim = self.n_kv_heads * self.head_dim
        per_layer = 2 * self.dim * self.dim + 2 * self.dim * kv_dim + 3 * self.dim * self.hidden_dim
        n_matmul = self.n_layers * per_layer + self.vocab_size * self.dim
        return 6.0 * n_matmul + 12.0 * self.n_layers * self.dim * seq_len


# llama2.c's TinyStories models (its README table) and a GPT-2-small-sized Llama.
PRESETS: dict[str, dict] = {
    "260K": dict(
        vocab_size=512, dim=64, n_layers=5, n_heads=8, n_kv_heads=4, multiple_of=4, max_seq_len=512
    ),
    "15M": dict(vocab_size=32000, dim=288, n_layers=6, n_heads=6, max_seq_len=256),
    "42M": dict(vocab_size=32000, dim=512, n_layers=8, n_heads=8, max_seq_len=1024),
    "110M": dict(vocab_size=32000, dim=768, n_layers=12, n_heads=12, max_seq_len=1024),
    # GPT-2's 50257 tokens padded to a multiple of 64 for fast matmuls.
    "gpt2-124M": dict(vocab_size=50304, dim=768, n_layers=12, n_heads=12, max_seq_len=1024),
}


def model_config(preset: str | None = None, **overrides) -> ModelConfig:
    """A preset's configuration with some fields replaced (e.g. vocab_size from the shards)."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(ModelConfig)}
    if unknown:
        raise ValueError(f"unknown model config fields: {sorted(unknown)}")
    return ModelConfig(**{**PRESETS.get(preset, {}), **overrides})


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 (as HF Llama does) so bf16/fp16 training stays stable.
        x32 = x.float()
        return self.weight * (
            x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        ).type_as(x)


def rotary_tables(head_dim: int, seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [seq_len, head_dim], each frequency repeated over both halves."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, D]: dimension i is paired with i + D/2 (HF Llama's layout)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x, cos, sin, attn_mask, is_causal):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.down_proj = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, attn_mask, is_causal):
        x = x + self.dropout(
            self.self_attn(self.input_layernorm(x), cos, sin, attn_mask, is_causal)
        )
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        # Recompute each block's activations in the backward pass (less memory, ~1/3 more
        # compute); the trainer switches this on from its config.
        self.activation_checkpointing = False
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rotary_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2's scaled init: the projections that write into the residual stream get a
        # smaller std so the stream's variance does not grow with depth.
        for name, param in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self,
        input_ids: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = True,
    ) -> torch.Tensor:
        """Logits [B, T, V] for input_ids [B, T].

        attn_mask: bool [B, 1 or H, T, T], True where query i may attend to key j. With
        is_causal it is combined with the causal mask (e.g. document boundaries); without,
        it is the whole mask (e.g. prefix LM). None with is_causal=False: bidirectional.
        """
        T = input_ids.shape[1]
        if T > self.config.max_seq_len:
            raise ValueError(f"sequence length {T} exceeds max_seq_len {self.config.max_seq_len}")
        if attn_mask is not None and is_causal:
            causal = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()
            attn_mask, is_causal = attn_mask & causal, False
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            if self.activation_checkpointing and self.training:
                x = checkpoint(layer, x, cos, sin, attn_mask, is_causal, use_reentrant=False)
            else:
                x = layer(x, cos, sin, attn_mask, is_causal)
        return self.lm_head(self.norm(x))

    def num_params(self) -> int:
        """Distinct parameters: a tied embedding matrix counts once."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> float:
        return self.config.flops_per_token(seq_len)


def save_model(
    model: Transformer | dict[str, torch.Tensor], cfg: ModelConfig, directory: str | Path
) -> Path:
    """Write `model.pt` (plain fp32 state dict) and `model_config.json` into directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    state = {k: v.detach().to("cpu", torch.float32) for k, v in state.items()}
    torch.save(state, directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    return directory


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> Transformer:
    """The Transformer saved by `save_model` in directory."""
    directory = Path(directory)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} not found: not a saved model directory")
    cfg = ModelConfig(**json.loads((directory / CONFIG_FILE).read_text()))
    model = Transformer(cfg)
    state = torch.load(directory / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model
