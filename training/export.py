"""Export a trained model to Hugging Face format: `LlamaForCausalLM` weights
(model.safetensors), config.json and the tokenizer files, loadable by `transformers`.

Our parameter names and rotary layout are HF Llama's (see training/model.py), so the
export is a rename: a `model.` prefix on everything but `lm_head`, and no `lm_head` at all
when the embeddings are tied (HF re-ties it from `tie_word_embeddings`).

    python -m training export MODEL_DIR OUT_DIR [--tokenizer tokenizer.json|manifest.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import fsspec
import torch
from safetensors.torch import load_file, save_file

from training.model import ModelConfig, Transformer, load_model

HF_WEIGHTS = "model.safetensors"
HF_CONFIG = "config.json"


def to_hf_names(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    renamed = {}
    for name, tensor in state.items():
        if name == "lm_head.weight":
            if not cfg.tie_embeddings:
                renamed[name] = tensor
        else:
            renamed[f"model.{name}"] = tensor
    return renamed


def from_hf_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name.removeprefix("model."): tensor for name, tensor in state.items()}


def hf_config(cfg: ModelConfig, entry: dict) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        # transformers >= 5 reads rope_parameters; older versions read rope_theta.
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": cfg.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "float32",
        "bos_token_id": entry.get("bos_id"),
        "eos_token_id": entry.get("eos_id"),
        "pad_token_id": entry.get("pad_id"),
    }


def config_from_hf(config: dict) -> ModelConfig:
    if config.get("model_type") != "llama":
        raise ValueError(f"not a Llama export (model_type {config.get('model_type')!r})")
    rope = config.get("rope_parameters") or {}
    return ModelConfig(
        vocab_size=config["vocab_size"],
        dim=config["hidden_size"],
        n_layers=config["num_hidden_layers"],
        n_heads=config["num_attention_heads"],
        n_kv_heads=config["num_key_value_heads"],
        hidden_dim=config["intermediate_size"],
        max_seq_len=config["max_position_embeddings"],
        norm_eps=config["rms_norm_eps"],
        rope_theta=rope.get("rope_theta", config.get("rope_theta", 10000.0)),
        tie_embeddings=config.get("tie_word_embeddings", False),
    )


SPECIAL_IDS = ("bos_id", "eos_id", "pad_id", "mask_id")


def tokenizer_source(path: str | Path) -> tuple[Path, dict]:
    """(tokenizer.json, its entry as in the shard manifest: special ids and add_bos).

    path is a shard manifest.json or its directory, an export directory (tokenizer.json +
    tokenizer_config.json), or a bare tokenizer.json (no special ids then).
    """
    path = Path(path)
    if path.is_dir():
        path = (
            path / "manifest.json"
            if (path / "manifest.json").is_file()
            else path / "tokenizer.json"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}")
    if path.name == "manifest.json":
        entry = json.loads(path.read_text())["tokenizer"]
        return path.parent / entry["path"], entry
    config_file = path.parent / "tokenizer_config.json"
    if not config_file.is_file():
        return path, {}
    from tokenizers import Tokenizer

    tokenizer, config = Tokenizer.from_file(str(path)), json.loads(config_file.read_text())
    entry = {
        key: tokenizer.token_to_id(config[token_key(key)])
        for key in SPECIAL_IDS
        if config.get(token_key(key))
    }
    return path, {**entry, "add_bos": config.get("add_bos_token", False)}


def token_key(id_key: str) -> str:
    return id_key.replace("_id", "_token")


def write_tokenizer(tokenizer_json: str | Path, entry: dict, out: Path) -> None:
    """Into out: tokenizer.json (from a local path or s3://) plus the tokenizer_config.json
    that names its special tokens, so AutoTokenizer and `generate` know them."""
    from tokenizers import Tokenizer

    with fsspec.open(str(tokenizer_json), "rb") as f:
        data = f.read()
    (out / "tokenizer.json").write_bytes(data)
    tokenizer = Tokenizer.from_str(data.decode())
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": entry.get("add_bos", False),
    }
    for key in SPECIAL_IDS:
        if entry.get(key) is not None:
            config[token_key(key)] = tokenizer.id_to_token(entry[key])
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def export(model_dir: str | Path, out: str | Path, tokenizer: str | Path | None = None) -> Path:
    """Write model_dir's model (see training.model.save_model) to out in HF format."""
    model = load_model(model_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer is None and (Path(model_dir) / "tokenizer.json").is_file():
        tokenizer = model_dir  # a checkpoint carries its tokenizer
    tokenizer_json, entry = tokenizer_source(tokenizer) if tokenizer else (None, {})
    # safetensors refuses tensors that share memory: clone each one.
    state = {
        k: v.contiguous().clone() for k, v in to_hf_names(model.state_dict(), model.config).items()
    }
    save_file(state, out / HF_WEIGHTS, metadata={"format": "pt"})
    (out / HF_CONFIG).write_text(json.dumps(hf_config(model.config, entry), indent=2) + "\n")
    if tokenizer_json is not None:
        write_tokenizer(tokenizer_json, entry, out)
    return out


def load_export(directory: str | Path) -> Transformer:
    """Our Transformer from an HF Llama export directory (ours or any compatible one)."""
    directory = Path(directory)
    cfg = config_from_hf(json.loads((directory / HF_CONFIG).read_text()))
    model = Transformer(cfg)
    state = from_hf_names(load_file(directory / HF_WEIGHTS))
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    model.load_state_dict(state)
    return model


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "model_dir", help="directory with model.pt + model_config.json (a checkpoint)"
    )
    parser.add_argument("out", help="output directory for the Hugging Face export")
    parser.add_argument(
        "--tokenizer",
        help="tokenizer.json, or the shards' manifest.json / directory "
        "(also gives the special token ids); default: the checkpoint's own",
    )
    args = parser.parse_args(argv)
    out = export(args.model_dir, args.out, args.tokenizer)
    print(f"exported {args.model_dir} -> {out} (LlamaForCausalLM, safetensors)")
    return 0
