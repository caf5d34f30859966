"""Sample text from a trained model: a model directory (model.pt + model_config.json, as
checkpoints hold) or a Hugging Face export (training/export.py).

    python -m training generate PATH [--prompt "Once upon a time"] [--tokenizer MANIFEST]
        [--num-samples 3] [--max-new-tokens 200] [--temperature 0.8] [--top-k 200]

The tokenizer is the shards' (manifest.json or its directory, via --tokenizer) or the
tokenizer.json inside PATH. Each sample starts like a document in the shards: after BOS
when the shards add one, else after EOS (which ends every previous document).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from training.export import HF_CONFIG, load_export, tokenizer_source
from training.model import CONFIG_FILE, Transformer, load_model


def load_any(path: str | Path) -> Transformer:
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return load_model(path)
    if (path / HF_CONFIG).is_file():
        return load_export(path)
    raise FileNotFoundError(
        f"{path} holds neither {CONFIG_FILE} (a model directory) "
        f"nor {HF_CONFIG} (a Hugging Face export)"
    )


@torch.no_grad()
def generate(
    model: Transformer,
    ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    stop_id: int | None = None,
) -> torch.Tensor:
    """Extend ids [B, T] by sampling; temperature 0 is greedy. Stops early once every row
    has produced stop_id. Without a KV cache: each step re-reads the (cropped) context."""
    model.eval()
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        logits = model(ids[:, -model.config.max_seq_len :])[:, -1].float()
        if temperature == 0:
            next_id = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.shape[-1]:
                kth = torch.topk(logits, top_k).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            next_id = torch.multinomial(probs.cpu(), 1, generator=generator).to(ids.device)
        ids = torch.cat([ids, next_id], dim=1)
        if stop_id is not None:
            finished |= next_id[:, 0] == stop_id
            if finished.all():
                break
    return ids


def start_key(entry: dict) -> str:
    """The special token that precedes a document in the shards."""
    return "bos_id" if entry.get("add_bos") else "eos_id"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training generate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("path", help="model directory or Hugging Face export directory")
    parser.add_argument(
        "--tokenizer",
        help="shard manifest.json or directory, or a tokenizer.json (default: PATH/tokenizer.json)",
    )
    parser.add_argument("--prompt", default="", help="text to continue (default: a new document)")
    parser.add_argument("--num-samples", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument(
        "--top-k", type=int, default=200, help="sample among the k likeliest tokens"
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    from tokenizers import Tokenizer

    tokenizer_json, entry = tokenizer_source(args.tokenizer or args.path)
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    if "eos_id" not in entry:
        print(
            f"note: {tokenizer_json} comes without special token ids: samples neither start "
            "nor stop at document boundaries (pass --tokenizer SHARD_DIR)",
            file=sys.stderr,
        )
    model = load_any(args.path).to(args.device)
    start = [] if entry.get(start_key(entry)) is None else [entry[start_key(entry)]]
    prompt_ids = tokenizer.encode(args.prompt).ids
    if not start + prompt_ids:
        parser.error("empty --prompt and the tokenizer names no BOS/EOS to start a document from")
    ids = torch.tensor([start + prompt_ids] * args.num_samples, device=args.device)
    generator = torch.Generator().manual_seed(args.seed)
    eos = entry.get("eos_id")
    out = generate(model, ids, args.max_new_tokens, args.temperature, args.top_k, generator, eos)
    for i, row in enumerate(out[:, len(start) :].tolist()):
        if eos in row[len(prompt_ids) :]:
            row = row[: row.index(eos, len(prompt_ids))]
        print(f"--- sample {i + 1}\n{tokenizer.decode(row)}")
    return 0
