"""Where every artefact of a run lives, relative to one run root directory.

``RunLayout(root)`` is the only object in the project that joins paths. The tree it describes::

    <root>/
      observations/dataset=<d>/split=<train|test>/model=<m>/part-<shard:05d>.parquet
      rewrites/dataset=<d>/split=<train|test>/part-<shard:05d>.parquet
      supervision/dataset=<d>/<name>.parquet        μ, c̄, σ, u, labels, ablations, diagnostics
      models/dataset=<d>/family=<f>/supervision=<s>/
                                                    one fitted router per directory (router
                                                    family f trained on supervision s),
                                                    routes.parquet (its test routes) and, for
                                                    single_shot/dars, lam_routes.parquet (test
                                                    routes at every λ of the Pareto sweep)
      results/<name>.<ext>                          evaluation tables (JSON + Parquet)
      report/<name>.<ext>                           Markdown, HTML and PNG plots
      embeddings/encoder=<e>/dataset=<d>/<split>.parquet
      truth/dataset=<d>/truth.parquet               simulated pools: the simulator's ground truth
      queries/dataset=<d>/queries.parquet           imported datasets: query text, gold, split
      imports/<run_id>.json                         what each `dars import` did
      manifest.parquet                              the expected keys of the run (dars.plan)
      ledger.sqlite                                 spend, cap reservations, write-ahead journal
                                                    and shard leases (dars.storage.ledger)
      quarantine/<same relative path>               damaged store files moved aside by
                                                    `dars status --repair` (never read)

Partition directories follow the hive convention (``key=value``) so DuckDB, pyarrow.dataset and
polars read the stores with no custom code. Every value that becomes a path component is checked
here: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit. The leading
character matters because hive readers skip entries starting with ``.`` or ``_`` (that is how our
temporary files stay invisible), so a model called ``_x`` would silently vanish from every read.

The root itself is a plain path or a ``file://`` URI (:func:`root_path`); other schemes
(``s3://``, ``gs://`` …) are refused, because the ledger is SQLite and store files are committed
by atomic rename under file locks: both need a POSIX filesystem, local or networked (NFS, EFS),
which neither an object store nor a FUSE mount of one is.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SPLITS: tuple[str, ...] = ("train", "test")
SHARD_WIDTH = 5


class StorageError(ValueError):
    """A frame, file or path does not satisfy the store's contract; the message says where."""


def check_name(field: str, value: object) -> str:
    """Return ``value`` if it is safe as a partition value or file stem, else raise StorageError."""
    if not isinstance(value, str) or not _NAME_RE.match(value) or value in {".", ".."}:
        raise StorageError(
            f"{field}={value!r} cannot be used in a path: it must match {_NAME_RE.pattern} "
            "(letters, digits, '.', '_', '-', not starting with '.' or '_')"
        )
    return value


def check_split(value: object) -> str:
    if value not in SPLITS:
        raise StorageError(f"split={value!r} is not valid; allowed values: {', '.join(SPLITS)}")
    return str(value)


def check_shard(value: object) -> int:
    # bool is an int subclass; shard=True is always a bug.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**SHARD_WIDTH:
        raise StorageError(f"shard={value!r} must be an int in [0, {10**SHARD_WIDTH - 1}]")
    return value


def shard_file_name(shard: int) -> str:
    """``part-00003.parquet`` for shard 3."""
    return f"part-{check_shard(shard):0{SHARD_WIDTH}d}.parquet"


def shard_from_file_name(name: str) -> int:
    """Inverse of :func:`shard_file_name`; raises StorageError for any other name."""
    m = re.fullmatch(rf"part-(\d{{{SHARD_WIDTH}}})\.parquet", name)
    if m is None:
        raise StorageError(f"{name!r} is not a shard file name (expected part-NNNNN.parquet)")
    return int(m.group(1))


# ``scheme://`` (RFC 3986 scheme, two characters or more so that a Windows drive ``C:`` is not
# one), or any ``file:`` form (``file:/abs`` has no ``//``, and is still not a relative path).
_URI_RE = re.compile(r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://|(?P<file>file:))", re.IGNORECASE)

FILE_URI_FORM = "file:// + an absolute path, e.g. file:///srv/dars/runs/paper"


def root_path(root: str | Path) -> Path:
    """The local directory of the run root ``root``: a plain path (relative to the working
    directory, as given; a leading ``~`` is the home directory) or a ``file://`` URI, i.e.
    ``file://`` + an absolute path (``file:///srv/runs/a``; ``file://localhost/srv/runs/a``
    per RFC 8089; percent-escapes decoded). Raises a one-line ``StorageError`` for a
    malformed ``file:`` URI and for every other scheme (``s3://``, ``gs://``, ``http://`` …):
    the ledger is SQLite and the stores commit files by atomic rename, both of which need a
    POSIX filesystem."""
    if isinstance(root, Path):
        return root.expanduser()
    m = _URI_RE.match(root)
    if m is None:
        return Path(root).expanduser()
    scheme = (m.group("scheme") or "file").lower()
    if scheme != "file":
        # FUSE mounts of buckets are no way out: mountpoint-s3 has no rename, s3fs renames by
        # copy and delete, none has cross-host locks, and SQLite cannot live on them.
        raise StorageError(
            f"run root {root!r}: {scheme}:// is not supported: the run's ledger is SQLite and its "
            "files are committed by atomic rename under file locks, which object stores and "
            "their FUSE mounts (mountpoint-s3, s3fs, gcsfuse) do not provide; give a plain path "
            "or file:// URI on a local or POSIX network filesystem (NFS, EFS), mounted at the "
            "same path on every worker"
        )
    parts = urlsplit(root)
    path = unquote(parts.path)
    if parts.query or parts.fragment or root.endswith(("?", "#")):
        problem = "takes no query or fragment"
    elif not root.lower().startswith("file://"):
        problem = "is not a file:// URI"
    elif not path.startswith("/"):
        problem = "has no absolute path"
    elif parts.netloc not in ("", "localhost"):
        # file://runs/a: "runs" is the URI's host, not the first directory.
        problem = f"names host {parts.netloc!r} (a relative path cannot be a URI)"
    else:
        return Path(path)
    raise StorageError(f"run root {root!r} {problem}; give {FILE_URI_FORM} or a plain path")


class RunLayout:
    """Paths of one run. Methods only compute paths; they never create or read anything.

    ``root`` is a path or a ``file://`` URI (:func:`root_path`); ``self.root`` is the path."""

    def __init__(self, root: str | Path) -> None:
        self.root = root_path(root)

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    # -- observations -------------------------------------------------------------------------
    def observations_dir(self) -> Path:
        return self.root / "observations"

    def observation_partition(self, dataset: str, split: str, model: str) -> Path:
        return (
            self.observations_dir()
            / f"dataset={check_name('dataset', dataset)}"
            / f"split={check_split(split)}"
            / f"model={check_name('model', model)}"
        )

    def observation_split_dir(self, dataset: str, split: str) -> Path:
        """``observations/dataset=<d>/split=<s>``: every model's partition of one split."""
        return (
            self.observations_dir()
            / f"dataset={check_name('dataset', dataset)}"
            / f"split={check_split(split)}"
        )

    def observation_file(self, dataset: str, split: str, model: str, shard: int) -> Path:
        return self.observation_partition(dataset, split, model) / shard_file_name(shard)

    # -- rewrites -----------------------------------------------------------------------------
    def rewrites_dir(self) -> Path:
        return self.root / "rewrites"

    def rewrite_partition(self, dataset: str, split: str) -> Path:
        return (
            self.rewrites_dir()
            / f"dataset={check_name('dataset', dataset)}"
            / f"split={check_split(split)}"
        )

    def rewrite_file(self, dataset: str, split: str, shard: int) -> Path:
        return self.rewrite_partition(dataset, split) / shard_file_name(shard)

    # -- later stages -------------------------------------------------------------------------
    def supervision_dir(self, dataset: str | None = None) -> Path:
        base = self.root / "supervision"
        return base if dataset is None else base / f"dataset={check_name('dataset', dataset)}"

    def supervision_file(self, dataset: str, name: str) -> Path:
        """``supervision/dataset=<d>/<name>.parquet`` (name e.g. ``aggregates``, ``labels``)."""
        return self.supervision_dir(dataset) / f"{check_name('name', name)}.parquet"

    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, dataset: str, family: str, supervision: str) -> Path:
        """Directory of one fitted router: router family ``family`` trained on the
        ``supervision`` labels of ``dataset``."""
        return (
            self.models_dir()
            / f"dataset={check_name('dataset', dataset)}"
            / f"family={check_name('family', family)}"
            / f"supervision={check_name('supervision', supervision)}"
        )

    def router_keys(self, dataset: str) -> list[tuple[str, str]]:
        """(family, supervision) of every router directory of ``dataset``, sorted."""
        base = self.models_dir() / f"dataset={check_name('dataset', dataset)}"
        return sorted(
            (f.name.split("=", 1)[1], s.name.split("=", 1)[1])
            for f in base.glob("family=*")
            for s in f.glob("supervision=*")
        )

    def routes_file(self, dataset: str, family: str, supervision: str) -> Path:
        """Test-query routes of one trained (dataset, family, supervision): ``routes.parquet`` in
        its model directory (one row per (draw, query_id); see :mod:`dars.storage.models`)."""
        return self.model_dir(dataset, family, supervision) / "routes.parquet"

    def lam_routes_file(self, dataset: str, family: str, supervision: str) -> Path:
        """Test-query routes of one trained (dataset, family, supervision) at every λ of the
        Pareto sweep: ``lam_routes.parquet`` in its model directory (one row per (lam, draw,
        query_id); written for the single_shot and dars supervisions only, see
        :mod:`dars.storage.models`)."""
        return self.model_dir(dataset, family, supervision) / "lam_routes.parquet"

    def results_dir(self) -> Path:
        return self.root / "results"

    def results_file(self, name: str, ext: str = "parquet") -> Path:
        return self.results_dir() / f"{check_name('name', name)}.{check_name('ext', ext)}"

    def report_dir(self) -> Path:
        return self.root / "report"

    def report_file(self, name: str, ext: str = "md") -> Path:
        return self.report_dir() / f"{check_name('name', name)}.{check_name('ext', ext)}"

    def report_files(self, ext: str) -> list[Path]:
        """The report files with extension ``ext`` (e.g. the PNG figures), sorted."""
        return sorted(self.report_dir().glob(f"*.{check_name('ext', ext)}"))

    def embeddings_dir(self) -> Path:
        return self.root / "embeddings"

    def embeddings_file(self, encoder: str, dataset: str, split: str) -> Path:
        """Cached query embeddings; ``org/name`` encoder ids become ``org--name`` (hub style)."""
        enc = encoder.strip("/").replace("/", "--")
        return (
            self.embeddings_dir()
            / f"encoder={check_name('encoder', enc)}"
            / f"dataset={check_name('dataset', dataset)}"
            / f"{check_split(split)}.parquet"
        )

    def queries_file(self, dataset: str) -> Path:
        """The queries of an imported dataset (``dars import``): their text, gold and split —
        ``queries/dataset=<d>/queries.parquet``."""
        return (
            self.root / "queries" / f"dataset={check_name('dataset', dataset)}" / "queries.parquet"
        )

    def imports_dir(self) -> Path:
        return self.root / "imports"

    def import_manifest(self, run_id: str) -> Path:
        """What one ``dars import`` did (file, its sha256, mappings, renamed values, counts):
        ``imports/<run_id>.json``."""
        return self.imports_dir() / f"{check_name('run_id', run_id)}.json"

    def truth_file(self, dataset: str) -> Path:
        """The simulated pool's ground truth for ``dataset`` (written by the collect stage for
        simulated pools only): ``truth/dataset=<d>/truth.parquet``."""
        return self.root / "truth" / f"dataset={check_name('dataset', dataset)}" / "truth.parquet"

    def timing_file(self) -> Path:
        """How long the last ``dars run`` took, on what machine and load (``timing.json``)."""
        return self.root / "timing.json"

    def manifest_file(self) -> Path:
        return self.root / "manifest.parquet"

    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    def quarantine_path(self, path: str | Path, attempt: int = 0) -> Path:
        """Where ``dars status --repair`` moves the damaged file ``path`` (a path under the
        root): ``quarantine/<its path relative to the root>``; ``attempt`` n > 0 appends ``.n``
        so a file damaged again never overwrites an earlier quarantined one."""
        path = Path(path)
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            raise StorageError(f"{path} is not under the run root {self.root}") from None
        if rel.parts[:1] == ("quarantine",):
            raise StorageError(f"{path} is already in quarantine")
        out = self.quarantine_dir() / rel
        return out if attempt == 0 else out.with_name(f"{out.name}.{attempt}")

    def ledger_file(self) -> Path:
        """The money ledger of the root (spend, cap reservations, write-ahead journal, leases;
        :mod:`dars.storage.ledger`): ``ledger.sqlite``, with SQLite's ``-wal``/``-shm`` beside."""
        return self.root / "ledger.sqlite"
