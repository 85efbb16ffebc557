"""Importing dars sets no environment variable; the entry points apply the offline defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dars.env import OFFLINE_DEFAULTS, ONLINE_SKIPS, apply_offline_defaults

# Third-party libraries set variables of their own at import (scikit-learn, polars' allocator),
# so they are imported before the snapshot: the probe measures what dars itself sets.
_PROBE = """
import json, os
import numpy, polars, pyarrow, pydantic, sklearn, sklearn.neighbors, yaml
before = dict(os.environ)
import {modules}
after = dict(os.environ)
print(json.dumps(sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))))
"""


def _changed_by(modules: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_DEFAULTS}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(modules=modules)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_library_sets_nothing():
    assert _changed_by("dars, dars.config, dars.storage, dars.supervision, dars.routers") == []


def test_the_cli_applies_the_offline_defaults():
    changed = set(_changed_by("dars.cli"))
    assert set(OFFLINE_DEFAULTS) <= changed


def test_user_settings_win_and_online_skips_the_hub_switches(monkeypatch):
    for key in OFFLINE_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("DARS_ONLINE", "1")
    apply_offline_defaults()
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "5"
    for key in ONLINE_SKIPS:
        assert key not in os.environ
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


@pytest.mark.parametrize("value", ["", "0", "no"])
def test_offline_unless_opted_in(monkeypatch, value):
    monkeypatch.setenv("DARS_ONLINE", value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    apply_offline_defaults()
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_prefect_client_telemetry_is_off(monkeypatch):
    """Regression (issue 15): PREFECT_SERVER_ANALYTICS_ENABLED alone left Prefect's client
    telemetry on, and the first run in a terminal printed its usage-data notice."""
    for key in OFFLINE_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    from prefect._internal.analytics.ci_detection import CI_ENV_VARS
    from prefect._internal.analytics.enabled import is_telemetry_enabled

    for ci in CI_ENV_VARS:
        monkeypatch.delenv(ci, raising=False)
    assert is_telemetry_enabled()  # what a terminal user got before
    apply_offline_defaults()
    assert os.environ["DO_NOT_TRACK"] == "1"
    assert not is_telemetry_enabled()
