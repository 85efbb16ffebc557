"""Preset words shared by the config and the routers (dars.presets)."""

import pytest

from dars.presets import PRESETS, preset_name, split_router_name


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("mlp", ("mlp", None)),
        ("mlp-paper", ("mlp", "paper")),
        ("graph_router-tuned", ("graph_router", "tuned")),
        ("my-family", ("my-family", None)),  # a suffix that is no preset is part of the name
        ("-paper", ("-paper", None)),
    ],
)
def test_split_router_name(name, split):
    assert split_router_name(name) == split


def test_preset_name_round_trips():
    for preset in PRESETS:
        assert split_router_name(preset_name("mirt", preset)) == ("mirt", preset)
