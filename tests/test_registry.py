"""The one Registry type: registration, base-class and duplicate checks, lazy built-ins found in a
package, entry points, and errors that list what is available."""

from __future__ import annotations

import sys
import textwrap

import pytest

from dars.registry import Registry, UnknownNameError


class Base:
    pass


def _package(tmp_path, monkeypatch, name: str, modules: dict[str, str]) -> str:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod, body in modules.items():
        (pkg / f"{mod}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_register_get_and_errors():
    reg: Registry[type[Base]] = Registry("widget", Base)

    @reg.register("a")
    class A(Base):
        pass

    assert reg.get("a") is A and "a" in reg and reg.names() == ["a"]
    reg.add("a", A)  # the same object again is a no-op
    with pytest.raises(ValueError, match="widget 'a' is already registered by .*A"):
        reg.add("a", type("B", (Base,), {}))
    with pytest.raises(TypeError, match="must be a subclass of Base"):
        reg.add("x", int)
    with pytest.raises(UnknownNameError, match="unknown widget 'b'; available: a") as err:
        reg.get("b")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    assert str(err.value) == "unknown widget 'b'; available: a"  # not repr-quoted like KeyError


def test_instances_and_check():
    reg: Registry[Base] = Registry("thing", Base, instances=True)
    obj = reg.register("x")(Base())
    assert reg.get("x") is obj
    with pytest.raises(TypeError, match="must be an instance of Base"):
        reg.add("y", Base)
    assert reg.check(["x"]) == ["x"]
    with pytest.raises(UnknownNameError, match=r"unknown thing\(s\) \['z'\]; available: x"):
        reg.check(["x", "z"])
    with pytest.raises(UnknownNameError, match="no thing given; available: x"):
        reg.check([])


def test_module_per_entry_imports_only_the_module_asked_for(tmp_path, monkeypatch):
    reg: Registry[type[Base]] = Registry("family", Base)
    sys.modules["fam_test_registry"] = type(sys)("fam_test_registry")
    sys.modules["fam_test_registry"].reg = reg
    sys.modules["fam_test_registry"].Base = Base
    body = """
        from fam_test_registry import Base, reg

        @reg.register("{name}")
        class F(Base):
            pass
        """
    pkg = _package(
        tmp_path,
        monkeypatch,
        "fams_pkg",
        {"alpha": body.format(name="alpha"), "beta": body.format(name="beta")},
    )
    lazy: Registry[type[Base]] = reg
    lazy.package, lazy.module_per_entry = pkg, True
    assert lazy.names() == ["alpha", "beta"]
    assert f"{pkg}.alpha" not in sys.modules  # listing imports nothing
    assert lazy.get("alpha").__module__ == f"{pkg}.alpha"
    assert f"{pkg}.beta" not in sys.modules
    del sys.modules["fam_test_registry"]


def test_package_without_module_per_entry_imports_every_module(tmp_path, monkeypatch):
    reg: Registry[type[Base]] = Registry("benchmark", Base)
    sys.modules["bench_test_registry"] = type(sys)("bench_test_registry")
    sys.modules["bench_test_registry"].reg = reg
    sys.modules["bench_test_registry"].Base = Base
    pkg = _package(
        tmp_path,
        monkeypatch,
        "benches_pkg",
        {
            "two": """
                from bench_test_registry import Base, reg

                reg.add("first", type("First", (Base,), {}))
                reg.add("second", type("Second", (Base,), {}))
                """
        },
    )
    reg.package = pkg
    assert reg.names() == ["first", "second"]
    del sys.modules["bench_test_registry"]


def test_entry_points_are_found_lazily(tmp_path, monkeypatch):
    (tmp_path / "ep_mod_test_registry.py").write_text(
        "from tests.test_registry import Base\n\nclass Plugged(Base):\n    pass\n"
    )
    dist = tmp_path / "plugin_test_registry-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: plugin-test-registry\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[dars.test_registry]\nplugged = ep_mod_test_registry:Plugged\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[type[Base]] = Registry("plugin", Base, group="dars.test_registry")
    assert reg.names() == ["plugged"]
    assert "ep_mod_test_registry" not in sys.modules
    assert reg.get("plugged").__name__ == "Plugged"


def test_scratch_forgets_what_was_registered_inside_and_keeps_the_rest():
    reg: Registry[type[Base]] = Registry("widget", Base)
    kept = reg.register("kept")(type("Kept", (Base,), {}))
    with reg.scratch():
        reg.register("toy")(type("Toy", (Base,), {}))
        assert reg.names() == ["kept", "toy"]
    assert reg.names() == ["kept"] and reg.get("kept") is kept
