"""Run statistics: documents and characters per stage, drop reason, language and source.

Stats are plain nested dicts of counters so that per-task stats (written in each task's
completion marker) merge by addition into the run's stats.json. `reconcile` checks the
accounting identity: every input document is either kept or dropped for one reason.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc


def _count(texts: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    chars = pc.sum(pc.utf8_length(texts)).as_py() if len(texts) else 0
    return {"docs": len(texts), "chars": chars or 0}


def new_stats() -> dict:
    return {"input": {"docs": 0, "chars": 0}, "kept": {"docs": 0, "chars": 0},
            "stages": {}, "rejected": {}, "by_lang": {}, "by_source": {}, "failed_files": []}


def merge(into: dict, other: dict) -> dict:
    """Add `other` into `into` (ints add, dicts merge, lists concatenate)."""
    for key, value in other.items():
        if isinstance(value, dict):
            merge(into.setdefault(key, {}), value)
        elif isinstance(value, list):
            into.setdefault(key, []).extend(value)
        else:
            into[key] = into.get(key, 0) + value
    return into


def merge_all(parts: Iterable[dict]) -> dict:
    total = new_stats()
    for part in parts:
        merge(total, part)
    return total


def record_input(stats: dict, table: pa.Table) -> None:
    merge(stats["input"], _count(table.column("text")))


def record_stage(stats: dict, stage: str, before: pa.Table, after: pa.Table) -> None:
    """`before`: live rows given to the stage; `after`: the same rows scored, with `reason`."""
    dropped = pc.is_valid(after.column("reason"))
    entry = {
        "in": _count(before.column("text")),
        "out": _count(after.filter(pc.invert(dropped)).column("text")),
        "dropped": _count(after.filter(dropped).column("text")),
    }
    # Characters a stage removes without dropping the document (normalization).
    entry["chars_changed"] = entry["in"]["chars"] - entry["out"]["chars"] - entry["dropped"]["chars"]
    merge(stats["stages"].setdefault(stage, {}), entry)


def record_final(stats: dict, table: pa.Table) -> None:
    """Count the final table: kept vs each drop reason, per language and per source."""
    reason = table.column("reason")
    kept = table.filter(pc.is_null(reason))
    merge(stats["kept"], _count(kept.column("text")))
    langs = table.column("lang") if "lang" in table.column_names else pa.nulls(len(table), pa.string())
    rows = zip(reason.to_pylist(), langs.to_pylist(), table.column("source").to_pylist(),
               pc.utf8_length(table.column("text")).to_pylist())
    for why, lang, source, chars in rows:
        outcome = "kept" if why is None else "rejected"
        chars = chars or 0
        if why is not None:
            merge(stats["rejected"].setdefault(why, {}), {"docs": 1, "chars": chars})
        merge(stats["by_lang"].setdefault(lang or "unknown", {}), {f"{outcome}_docs": 1, f"{outcome}_chars": chars})
        merge(stats["by_source"].setdefault(source, {}), {f"{outcome}_docs": 1, f"{outcome}_chars": chars})


def record_later_drops(stats: dict, dropped: pa.Table) -> None:
    """Documents that a later phase (dedup) drops after they were counted as kept."""
    for why, lang, source, chars in zip(
            dropped.column("reason").to_pylist(), dropped.column("lang").to_pylist(),
            dropped.column("source").to_pylist(), pc.utf8_length(dropped.column("text")).to_pylist()):
        moved = {"docs": 1, "chars": chars or 0}
        merge(stats["kept"], {k: -v for k, v in moved.items()})
        merge(stats["rejected"].setdefault(why, {}), moved)
        for key, group in (("by_lang", lang), ("by_source", source)):
            merge(stats[key].setdefault(group, {}), {"kept_docs": -1, "kept_chars": -moved["chars"],
                                                     "rejected_docs": 1, "rejected_chars": moved["chars"]})


class ReconcileError(AssertionError):
    pass


def reconcile(stats: dict) -> None:
    """Input = kept + every drop, for documents and for characters."""
    dropped_docs = sum(r["docs"] for r in stats["rejected"].values())
    dropped_chars = sum(r["chars"] for r in stats["rejected"].values())
    changed = sum(s.get("chars_changed", 0) for s in stats["stages"].values())
    if stats["input"]["docs"] != stats["kept"]["docs"] + dropped_docs:
        raise ReconcileError(
            f"documents do not add up: input {stats['input']['docs']} != kept "
            f"{stats['kept']['docs']} + dropped {dropped_docs}")
    if stats["input"]["chars"] != stats["kept"]["chars"] + dropped_chars + changed:
        raise ReconcileError(
            f"characters do not add up: input {stats['input']['chars']} != kept "
            f"{stats['kept']['chars']} + dropped {dropped_chars} + changed by stages {changed}")
