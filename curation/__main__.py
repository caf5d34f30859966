"""`python -m curation COMMAND ...`: each command lives in its own module.

Commands are imported lazily so that `--help` and light commands stay fast.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, function, one-line help). Each function takes argv (list[str]).
COMMANDS = {
    "run": ("curation.run", "main", "run the pipeline described by a config file"),
    "inspect": ("curation.inspect", "main", "summarize a run's outputs; write an HTML report"),
    "build-lm": ("curation.lm.build", "main", "train a KenLM model for perplexity filtering"),
    "config-doc": ("curation.run", "config_doc", "print every config option as a Markdown table"),
    "train-tokenizer": ("curation.tokenizer", "main", "train a byte-level BPE tokenizer on curated documents"),
    "verify": ("curation.verify", "main", "check a token shard directory against its manifest"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
        print("usage: python -m curation COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module, function, _ = COMMANDS[argv[0]]
    return getattr(importlib.import_module(module), function)(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
