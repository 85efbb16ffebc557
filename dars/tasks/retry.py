"""Retry conditions of the Prefect tasks (the retry rules live on the decorators)."""

from __future__ import annotations

from typing import Any


def retry_on_transient_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only on OS-level I/O errors (e.g. a network filesystem hiccup), never on a missing
    input (``FileNotFoundError``), a permission problem or a data/config error: retrying cannot
    fix those."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, OSError) and not isinstance(
        exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError
    )
