"""Registry behaviour: lazy imports, duplicates, reserved and unknown names, custom families
registered in code or through a ``dars.routers`` entry point, loading by saved family."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dars.registry import UnknownNameError
from dars.routers import (
    available_routers,
    get_router_class,
    load_router,
    make_router,
    register_router,
)
from tests.routers.toy_family import BestFixedRouter

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout (and ``paths``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (*paths, REPO))}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=REPO,
        env=env,
    )


def test_unknown_name_lists_the_available_families():
    with pytest.raises(
        UnknownNameError, match="unknown router family 'nope'; available: .*knn.*mirt"
    ) as info:
        get_router_class("nope")
    # Callers catch it as either.
    assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)
    with pytest.raises(ValueError, match="available: .*rm_softmax"):
        make_router("nope")


def test_duplicate_and_reserved_names_are_rejected(scratch_registry):
    first = register_router("dup")(type("First", (BestFixedRouter,), {}))
    with pytest.raises(ValueError, match=r"'dup' is already registered by .*\.First"):
        register_router("dup")(type("Second", (BestFixedRouter,), {}))
    register_router("dup")(first)  # the same class again is a no-op
    assert get_router_class("dup") is first

    # A built-in name belongs to its module, even before that module is imported (the mirt
    # module's own registration is what makes "mirt" its family).
    knn = get_router_class("knn")
    for name in ("knn", "mirt"):
        with pytest.raises(
            ValueError, match=f"reserved for the built-in dars.routers.families.{name}"
        ):
            register_router(name)(type("Impostor", (knn,), {}))
    assert get_router_class("mirt").__module__ == "dars.routers.families.mirt"
    register_router("knn")(knn)  # the built-in itself again is a no-op


def test_register_requires_a_router_subclass_and_a_name():
    with pytest.raises(TypeError, match="Router subclass"):
        register_router("not_a_router")(dict)
    with pytest.raises(ValueError, match="identifier-like"):
        register_router("two words")


def test_custom_family_registers_builds_saves_and_loads(task, scratch_registry, tmp_path):
    @register_router("best_fixed")
    class BestFixed(BestFixedRouter):
        pass

    assert "best_fixed" in available_routers()
    router = make_router("best_fixed").fit(task.X_train, task.targets)
    assert router.name == "best_fixed"
    assert len(set(router.route(task.X_test).tolist())) == 1
    loaded = load_router(router.save(tmp_path / "r"))
    assert type(loaded) is BestFixed
    np.testing.assert_array_equal(
        loaded.predict_utility(task.X_test), router.predict_utility(task.X_test)
    )


def test_load_router_dispatches_on_the_saved_family(task, fitted_dars, tmp_path):
    for family in ("knn", "rm_softmax"):
        path = fitted_dars[family].save(tmp_path / family)
        assert json.loads((path / "router.json").read_text())["family"] == family
        assert type(load_router(path)) is get_router_class(family)
    with pytest.raises(FileNotFoundError, match="no router.json"):
        load_router(tmp_path / "absent")


def test_every_family_declares_its_own_tags():
    for family in available_routers():
        cls = get_router_class(family)
        assert "tags" in vars(cls), f"{family} inherits its tags instead of declaring them"
        assert cls.name == family


_LAZY = textwrap.dedent(
    """
    import json, sys
    from dars.routers import available_routers, make_router
    from dars.routers.synthetic import make_synthetic_task

    def loaded():
        return sorted(m.rsplit(".", 1)[1] for m in sys.modules
                      if m.startswith("dars.routers.families."))

    out = {"listed": len(available_routers()), "after_listing": loaded(),
           "torch_after_listing": "torch" in sys.modules}
    task = make_synthetic_task(n_train=40, n_test=10, n_features=8, n_models=3)
    for family in NO_TORCH:
        params = {"max_iter": 5} if family == "mlp" else {}
        router = make_router(family, random_state=0, **params)
        router.fit(task.X_train, task.targets).route(task.X_test)
    out["torch_after_sklearn_families"] = "torch" in sys.modules
    out["after_fitting"] = loaded()
    make_router(TORCH_FAMILY)
    out["torch_after_torch_family"] = "torch" in sys.modules
    print(json.dumps(out))
    """
)


def test_listing_imports_no_family_and_sklearn_families_never_import_torch():
    tagged = {f: get_router_class(f).tags.needs_torch for f in available_routers()}
    no_torch = sorted(f for f, needs in tagged.items() if not needs)
    torch_family = sorted(f for f, needs in tagged.items() if needs)[0]
    code = _LAZY.replace("NO_TORCH", repr(no_torch)).replace("TORCH_FAMILY", repr(torch_family))
    out = _python(code)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["listed"] >= 7
    assert got["after_listing"] == [] and not got["torch_after_listing"]
    assert got["after_fitting"] == no_torch and not got["torch_after_sklearn_families"]
    # Asking for a torch family imports torch, so the checks above can fail.
    assert got["torch_after_torch_family"]


_PLUGIN = textwrap.dedent(
    """
    import json, sys, tempfile
    from dars.routers import available_routers, get_router_class, load_router, make_router
    from dars.routers.synthetic import make_synthetic_task
    from dars.routers.testing import check_router

    assert "best_fixed" in available_routers()
    assert "tests.routers.toy_family" not in sys.modules  # listed, not imported
    cls = get_router_class("best_fixed")
    task = make_synthetic_task(n_train=20, n_test=5, n_features=4, n_models=3)
    router = make_router("best_fixed", shrink=0.25).fit(task.X_train, task.targets)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_router(router.save(tmp))
    print(json.dumps({
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "name": cls.name,
        "loaded": type(loaded) is cls and loaded.shrink == 0.25,
        "checks": check_router(cls),
    }))
    """
)


def test_a_family_from_another_package_registers_through_an_entry_point(tmp_path):
    # A throwaway installed distribution whose only content is the entry point, as another
    # package's pyproject.toml declares it.
    dist = tmp_path / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[dars.routers]\nbest_fixed = tests.routers.toy_family:BestFixedRouter\n"
    )
    out = _python(_PLUGIN, tmp_path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    # The class named by the entry point takes the entry point's name (it has no decorator).
    assert got["class"] == "tests.routers.toy_family.BestFixedRouter"
    assert got["name"] == "best_fixed" and got["loaded"]
    assert got["checks"][0] == "registered" and "save_load" in got["checks"]


def test_presets_apply_their_hyperparameters_and_name_what_exists(monkeypatch, scratch_registry):
    from dars.routers import preset_params
    from dars.routers.training import check_families, new_router

    @register_router("best_fixed")
    class BestFixed(BestFixedRouter):
        pass  # a family that declares no preset

    cls = get_router_class("mirt")
    monkeypatch.setattr(cls, "presets", {"paper": {"hidden": 8, "epochs": 3}})
    assert preset_params("mirt", "tuned") == {}
    paper = make_router("mirt", preset="paper", epochs=5)
    assert (paper.hidden, paper.epochs) == (8, 5)  # explicit parameters win over the preset
    with pytest.raises(ValueError, match="'best_fixed' has no preset 'paper'; it has: tuned"):
        make_router("best_fixed", preset="paper")
    with pytest.raises(ValueError, match="unknown router preset 'best'; presets: tuned, paper"):
        make_router("mirt", preset="best")
    # The train stage's builder: a `-preset` suffix beats the run's preset.
    assert new_router("mirt-paper", random_state=0, beta=0.2).hidden == 8
    assert new_router("mirt", random_state=0, beta=0.2, preset="paper").hidden == 8
    assert new_router("mirt-tuned", random_state=0, beta=0.2, preset="paper").hidden == 64
    assert check_families(["mirt-paper", "knn"]) == ["mirt-paper", "knn"]
    with pytest.raises(ValueError, match="suffixed -tuned or -paper"):
        check_families(["mirt-best"])


def test_a_preset_keeps_its_own_lam_grid(monkeypatch):
    from dars.routers.training import new_router

    cls = get_router_class("rm_softmax")
    monkeypatch.setattr(cls, "presets", {"paper": {"lam_grid": (0.0, 0.1)}})
    assert new_router("rm_softmax", random_state=0, beta=0.2, lam_grid=(0.05, 2.0)).lam_grid == (
        0.05,
        2.0,
    )
    kept = new_router("rm_softmax-paper", random_state=0, beta=0.2, lam_grid=(0.05, 2.0))
    assert kept.lam_grid == (0.0, 0.1)


def test_every_built_in_family_has_a_paper_preset_that_builds():
    # Issue 16: each family's `paper` preset (docs/router_presets.md); knn's equals tuned.
    for family in ("mlp", "knn", "embedllm", "avengers_pro", "graph_router", "mirt", "rm_softmax"):
        cls = get_router_class(family)
        assert "paper" in cls.presets, family
        router = make_router(family, preset="paper", random_state=0)
        assert router.get_params() == {
            **cls().get_params(),
            **cls.presets["paper"],
            "random_state": 0,
        }
    assert get_router_class("knn").presets["paper"] == {}
