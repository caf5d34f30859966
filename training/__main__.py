"""`python -m training COMMAND ...`: each command lives in its own module."""

from __future__ import annotations

import importlib
import sys

# command -> (module, function, one-line help). Each function takes argv (list[str]).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "export": ("training.export", "main", "export a model directory to Hugging Face format"),
    "generate": ("training.generate", "main", "sample text from a model directory or export"),
    "plot": ("training.plot", "main", "draw a run's training curves (metrics.jsonl) to PNG"),
    "train": ("training.trainer", "train_command", "train or resume from a YAML config (Ray Train + DeepSpeed)"),
    "warm-ops": ("training.trainer", "warm_ops_command", "build DeepSpeed's CPU ops once (make setup)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS), default=4)
        lines = [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
        print("usage: python -m training COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module, function, _ = COMMANDS[argv[0]]
    return getattr(importlib.import_module(module), function)(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
