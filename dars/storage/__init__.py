"""Storage: the only code that knows paths, schemas and partitioning.

* :class:`RunLayout` — every path under a run root (observations, rewrites, supervision, models,
  results, report, embeddings, manifest).
* Schemas — ``OBSERVATION_*`` and ``REWRITE_*`` (pyarrow schema, polars schema, hive schema, key,
  partition columns) and ``validate_observations`` / ``validate_rewrites``.
* Stores — ``write_observations`` (atomic, merging: an ok key is never written twice),
  ``scan_observations``, ``read_observations`` (safe while a collection writes), ``done_keys``,
  ``key_shards``; ``write_rewrites``, ``scan_rewrites``, ``rewrite_keys``.
* :func:`import_generations` — bring your own scored generations (CSV, JSONL, Parquet).
* :class:`Ledger` (:mod:`dars.storage.ledger`) — the root's money ledger: spend of every call,
  spend-cap reservations, the write-ahead journal of completed calls, shard leases.

``dars.storage.cache`` (user-level download cache) is separate and not imported here.
"""

from dars.storage.importer import ImportResult, import_generations
from dars.storage.layout import RunLayout, StorageError
from dars.storage.ledger import Ledger, SpendSummary, ledger
from dars.storage.schemas import (
    OBSERVATION_COLUMNS,
    OBSERVATION_HIVE_SCHEMA,
    OBSERVATION_KEY,
    OBSERVATION_PARTITION,
    OBSERVATION_POLARS_SCHEMA,
    OBSERVATION_SCHEMA,
    REWRITE_COLUMNS,
    REWRITE_HIVE_SCHEMA,
    REWRITE_KEY,
    REWRITE_PARTITION,
    REWRITE_POLARS_SCHEMA,
    REWRITE_SCHEMA,
    STATUSES,
    VIEWS,
    validate_observations,
    validate_rewrites,
)
from dars.storage.store import (
    RewriteCounts,
    WriteCounts,
    atomic_write_bytes,
    atomic_write_table,
    atomic_write_text,
    done_keys,
    key_shards,
    read_observations,
    rewrite_keys,
    scan_observations,
    scan_rewrites,
    write_observations,
    write_rewrites,
)

__all__ = [
    "OBSERVATION_COLUMNS",
    "OBSERVATION_HIVE_SCHEMA",
    "OBSERVATION_KEY",
    "OBSERVATION_PARTITION",
    "OBSERVATION_POLARS_SCHEMA",
    "OBSERVATION_SCHEMA",
    "REWRITE_COLUMNS",
    "REWRITE_HIVE_SCHEMA",
    "REWRITE_KEY",
    "REWRITE_PARTITION",
    "REWRITE_POLARS_SCHEMA",
    "REWRITE_SCHEMA",
    "STATUSES",
    "VIEWS",
    "ImportResult",
    "Ledger",
    "RewriteCounts",
    "RunLayout",
    "SpendSummary",
    "StorageError",
    "WriteCounts",
    "atomic_write_table",
    "atomic_write_bytes",
    "atomic_write_text",
    "done_keys",
    "import_generations",
    "key_shards",
    "ledger",
    "rewrite_keys",
    "read_observations",
    "scan_observations",
    "scan_rewrites",
    "validate_observations",
    "validate_rewrites",
    "write_observations",
    "write_rewrites",
]
