"""The stage contract: a small typed step over an Arrow table of documents.

A stage *scores*: it adds (or, for `text`, replaces) the columns it declares in `writes`.
Selection is separate: `select` turns those columns plus configured thresholds into a
drop reason per row (null = keep). Keeping the two apart means thresholds can be retuned
on the written Parquet without recomputing models (see `curation.selection`).

Stages never see Ray: the executor feeds them tables, so a stage is unit-testable on a
plain `pa.table(...)`. Heavy models are loaded in `setup`, which the executor calls once
per worker process, never per batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa


@dataclass(frozen=True)
class Resources:
    """What one worker running this stage needs; the executor sizes its actors from it."""

    num_cpus: float = 1.0
    memory_mb: int = 0
    num_gpus: float = 0.0


class Stage(ABC):
    name: ClassVar[str]
    reads: ClassVar[tuple[str, ...]]
    writes: ClassVar[dict[str, pa.DataType]]
    resources: Resources = Resources()

    def setup(self) -> None:
        """Load models. Called once per worker before the first batch."""

    def fit(self, sample: pa.Table) -> dict:
        """Fit data-dependent settings on a sample of live rows, before the main pass.

        Returns a patch for this stage's config section (the section named like the stage),
        e.g. `{"cutoffs": {"en": [120.5, 310.2]}}`; the executor applies it to the config
        every worker gets and records it in the run, so a resumed run reuses it. A stage
        whose settings are already given in the config returns {}.
        """
        return {}

    @abstractmethod
    def score(self, table: pa.Table) -> pa.Table:
        """Return `table` with the `writes` columns set. Only live rows are passed in."""

    def select(self, table: pa.Table) -> pa.Array:
        """Drop reason per row (string, null = keep) from the scored columns."""
        return pa.nulls(len(table), pa.string())


def set_column(table: pa.Table, name: str, values) -> pa.Table:
    """Append `name`, or replace it where it already exists."""
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values)
    index = table.schema.get_field_index(name)
    if index < 0:
        return table.append_column(name, values)
    return table.set_column(index, name, values)
