from pathlib import Path

import pytest
import yaml

from dars.config import (
    ConfigError,
    Experiment,
    check_root,
    experiment_from_dict,
    load_experiment,
    resolve_experiment,
)

ROOT = Path(__file__).resolve().parents[1]


def _minimal(**over):
    data = {
        "benchmarks": [{"name": "math500"}],
        "pool": {"models": [{"name": "a", "litellm_model": "openai/gpt-4o-mini"}]},
        "rewriter": {"name": "rw", "litellm_model": "openai/gpt-4o"},
    }
    data.update(over)
    return data


def test_defaults_follow_the_authors_code():
    exp = experiment_from_dict(_minimal())
    assert (exp.lam, exp.beta, exp.single_shot_draws) == (0.05, 0.2, 100)
    p = exp.protocol
    assert (p.train_rewrites, p.train_decodes, p.test_rewrites, p.test_decodes) == (5, 5, 3, 3)
    assert (p.temperature, p.top_p) == (0.7, 0.95)
    assert p.max_tokens_for("gpqa") == 768
    assert p.max_tokens_for("math500") == 3072
    assert p.max_tokens_for("drop800") == 512


# Pool size of every shipped config: a new config must be added here, so it is loaded by a test.
SHIPPED_POOL_SIZES = {"demo": 6, "paper": 6, "local": 2, "fidelity": 6}


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_load(path):
    exp = load_experiment(path)
    assert isinstance(exp, Experiment)
    assert len(exp.pool.models) == SHIPPED_POOL_SIZES[path.stem]


def test_local_pool_is_two_keyless_local_servers():
    exp = load_experiment(ROOT / "configs" / "local.yaml")
    assert exp.pool.names == ["smollm2-135m", "gemma3-270m"]
    for m in exp.pool.models:
        assert m.litellm_model == f"openai/{m.name}"
        assert m.api_base is not None and m.api_base.startswith("http://127.0.0.1:")
        assert m.api_key_env is None and m.max_concurrency == 1
    # Nominal prices that differ, so the normalised cost is not constant.
    assert len({m.input_price_per_m for m in exp.pool.models}) == 2
    assert exp.rewriter.litellm_model == "dars-sim/rewriter" and not exp.pool.simulated
    assert len({m.api_base for m in exp.pool.models}) == 2


def test_paper_pool_is_the_seed_pool():
    exp = load_experiment(ROOT / "configs" / "paper.yaml")
    assert [b.name for b in exp.benchmarks] == ["gpqa", "math500", "drop800"]
    assert exp.rewriter.litellm_model == "openai/gpt-4o"
    assert all(m.input_price_per_m is not None for m in exp.pool.models)


def test_unknown_benchmark_names_the_field_and_allowed_values(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "benchmarks: [{name: gqpa}]\n"
        "pool: {models: [{name: a, litellm_model: x/y}]}\n"
        "rewriter: {name: r, litellm_model: x/z}\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_experiment(bad)
    msg = str(exc.value)
    assert str(bad) in msg
    assert "benchmarks.0.name" in msg
    assert "gqpa" in msg and "gpqa" in msg and "math500" in msg


def test_typo_in_field_lists_allowed_fields():
    with pytest.raises(ConfigError) as exc:
        experiment_from_dict(_minimal(protocol={"train_rewirtes": 3}))
    msg = str(exc.value)
    assert "protocol.train_rewirtes" in msg
    assert "train_rewrites" in msg and "allowed fields" in msg


def test_duplicate_model_and_bad_model_name():
    pool = {
        "models": [{"name": "a", "litellm_model": "x/y"}, {"name": "a", "litellm_model": "x/z"}]
    }
    with pytest.raises(ConfigError, match="duplicate model name 'a'"):
        experiment_from_dict(_minimal(pool=pool))
    pool = {"models": [{"name": "a/b", "litellm_model": "x/y"}]}
    with pytest.raises(ConfigError, match="pool.models.0.name"):
        experiment_from_dict(_minimal(pool=pool))


def test_secrets_are_refused_in_extra_params():
    pool = {"models": [{"name": "a", "litellm_model": "x/y", "extra_params": {"api_key": "sk-1"}}]}
    with pytest.raises(ConfigError) as exc:
        experiment_from_dict(_minimal(pool=pool))
    assert "sk-1" not in str(exc.value)
    assert "api_key_env" in str(exc.value)


def test_out_of_range_value_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="lam"):
        experiment_from_dict(_minimal(lam=-1))
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_experiment(bad)


def test_diagnostics_definition_defaults_to_the_papers_and_is_validated():
    assert experiment_from_dict(_minimal()).diagnostics.definition == "paper"
    for given in ("draws", {"definition": "draws"}):
        exp = experiment_from_dict(_minimal(diagnostics=given))
        assert exp.diagnostics.definition == "draws"
    with pytest.raises(ConfigError) as exc:
        experiment_from_dict(_minimal(diagnostics="slots"), source="cfg.yaml")
    msg = str(exc.value)
    assert msg.startswith("cfg.yaml: diagnostics.definition: ")
    assert "unknown diagnostics definition 'slots'; allowed values: paper, draws" in msg
    with pytest.raises(ConfigError, match="diagnostics.index: unknown field; allowed fields: "):
        experiment_from_dict(_minimal(diagnostics={"index": "draws"}))


# ------------------------------------------------------------------------------------------------
# imported datasets (source: store)
# ------------------------------------------------------------------------------------------------
def _store_exp(**over):
    from dars.config import experiment_from_dict

    data = {
        "benchmarks": [{"name": "mine", "source": "store"}],
        "pool": {"models": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
        **over,
    }
    return experiment_from_dict(data)


def test_imported_datasets_need_no_rewriter_nor_routes():
    exp = _store_exp()
    assert exp.rewriter is None and exp.collected == [] and not exp.pool.simulated
    assert exp.models_for("mine") == ["a", "b", "c"]
    exp = _store_exp(benchmarks=[{"name": "mine", "source": "store", "models": ["c", "a"]}])
    assert exp.models_for("mine") == ["a", "c"]  # pool order


def test_imported_dataset_errors_name_the_field():
    from dars.config import ConfigError

    with pytest.raises(ConfigError, match=r"models \['z'\] are not in the pool"):
        _store_exp(benchmarks=[{"name": "mine", "source": "store", "models": ["a", "z"]}])
    with pytest.raises(ConfigError, match="must match"):
        _store_exp(benchmarks=[{"name": "my/set", "source": "store"}])
    with pytest.raises(ConfigError, match="rewriter: field required"):
        _store_exp(benchmarks=[{"name": "demo_mc"}])
    with pytest.raises(ConfigError, match=r"models \['a', 'b', 'c', 'rw'\] have no litellm_model"):
        _store_exp(benchmarks=[{"name": "demo_mc"}], rewriter={"name": "rw"})


def test_store_experiment_routes_each_dataset_among_its_models(tmp_path):
    from dars.config import ConfigError, store_experiment

    exp, left_out = store_experiment(
        tmp_path,
        {"full": ["a", "b", "c"], "part": ["a", "c"], "solo": ["b"]},
        labels={"model": {"a": "A[1]"}, "dataset": {"part": "par/t"}},
    )
    assert [b.name for b in exp.benchmarks] == ["full", "part"]
    assert exp.benchmark("full").models is None and exp.benchmark("part").models == ["a", "c"]
    assert exp.benchmark("part").label == "par/t" and exp.pool.models[0].label == "A[1]"
    assert "solo" in left_out and "routing needs two" in left_out["solo"]
    with pytest.raises(ConfigError, match="no imported dataset has at least two models"):
        store_experiment(tmp_path, {"solo": ["b"]})


# Issue 12, item 13: each problem below used to surface late (at collect, at train) or as a
# traceback from `dars status`; now `load_experiment` refuses it with one line naming the field.
DEMO_TEXT = (ROOT / "configs" / "demo.yaml").read_text()
DEMO_MC = "{name: demo_mc, n_train: 80, n_test: 40, options: {n_items: 120}}"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            (DEMO_MC, "{name: jsonl, path: /no/such/file.jsonl}"),
            "benchmarks.0.path: benchmark file /no/such/file.jsonl is not found",
        ),
        ((DEMO_MC, DEMO_MC.replace("n_train: 80", "n_train: 500")), "benchmarks.0.n_train: "),
        ((DEMO_MC, DEMO_MC.replace("n_test: 40", "n_test: 41")), "benchmarks.0.n_test: "),
        ((DEMO_MC, DEMO_MC.replace("n_items", "n_itemz")), "benchmarks.0.options: "),
        ((DEMO_MC, DEMO_MC.replace("120}", "lots}")), "benchmarks.0.options: "),
        (("seed: 0\n", "seed: 0\nfamilies: [bogus]\n"), "families: unknown router family 'bogus'"),
        (("demo_mc: 768", "demo_mc: -5"), "protocol.max_tokens.demo_mc: "),
        (("lam: 0.05", "lam: .inf"), "lam: Input should be a finite number"),
        (("beta: 0.2", "beta: .nan"), "beta: Input should be a finite number"),
        (("seed: 0\n", "seed: 0\nseed: 1\n"), "duplicate key 'seed' (first at line"),
        (("# The embedded", "# caf\udcff The embedded"), "line 1: not valid UTF-8"),
    ],
    ids=[
        "path",
        "n_train",
        "n_test",
        "option-name",
        "option-type",
        "family",
        "max_tokens",
        "lam-inf",
        "beta-nan",
        "duplicate-key",
        "utf8",
    ],
)
def test_observed_late_config_problems_fail_at_load(tmp_path, edit, expected):
    old, new = edit
    assert old in DEMO_TEXT
    path = tmp_path / "exp.yaml"
    path.write_bytes(DEMO_TEXT.replace(old, new, 1).encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message


def test_a_root_that_is_a_file_is_refused(tmp_path):
    a_file = tmp_path / "hostname"
    a_file.write_text("x\n")
    with pytest.raises(ConfigError, match=r"--root: .*hostname is a file, not a directory"):
        load_experiment(ROOT / "configs" / "demo.yaml", root=str(a_file))
    with pytest.raises(ConfigError, match=r"is inside .*hostname, which is a file"):
        load_experiment(ROOT / "configs" / "demo.yaml", root=str(a_file / "run"))
    assert load_experiment(ROOT / "configs" / "demo.yaml", root=str(tmp_path / "new")).root


def test_router_families_are_listed_without_importing_the_routers():
    import subprocess
    import sys

    code = (
        "import sys; from dars.config import router_families; names = router_families(); "
        "assert not any(m.startswith('dars.routers') for m in sys.modules), 'imported'; "
        "from dars.routers.registry import available_routers; "
        "assert names == available_routers(), (names, available_routers())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_hub_benchmark_without_a_local_copy_is_not_sized_at_load(tmp_path, monkeypatch):
    # Sizing gpqa would need the hub; its size is checked when collect loads it.
    monkeypatch.setenv("DARS_CACHE_DIR", str(tmp_path / "empty-cache"))
    exp = experiment_from_dict(_minimal(benchmarks=[{"name": "gpqa", "n_train": 100000}]))
    from dars.config import check_sources

    check_sources(exp, "x.yaml")  # nothing raised: not knowable without the network


# -- keys from a Prefect Secret block, run root as a URI (issue 13) ----------------------------


def _pool_model(**fields):
    return {"models": [{"name": "a", "litellm_model": "openai/x", **fields}]}


def test_a_model_may_name_a_prefect_secret_block_for_its_key():
    exp = experiment_from_dict(_minimal(pool=_pool_model(api_key_secret="openai-key-2")))
    spec = exp.pool.get("a")
    assert spec.api_key_secret == "openai-key-2" and spec.api_key_env is None


def test_env_and_secret_together_fail_in_one_line_naming_the_model_and_both_fields():
    pool = _pool_model(api_key_env="OPENAI_API_KEY", api_key_secret="openai-key")
    with pytest.raises(ConfigError) as info:
        experiment_from_dict(_minimal(pool=pool), source="x.yaml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("x.yaml: pool.models.0: model 'a' sets both")
    assert "api_key_env" in msg and "api_key_secret" in msg


@pytest.mark.parametrize("name", ["OpenAI-Key", "openai_key", "openai/key", "openai key"])
def test_secret_block_name_follows_prefect_block_name_rules(name):
    from prefect.types.names import BlockDocumentName
    from pydantic import TypeAdapter, ValidationError

    # Prefect itself refuses the name (so the check is not stricter than Prefect's) …
    with pytest.raises(ValidationError):
        TypeAdapter(BlockDocumentName).validate_python(name)
    # … and so does the config, at load, naming the field.
    with pytest.raises(
        ConfigError, match=r"pool\.models\.0\.api_key_secret: .* Prefect block name"
    ):
        experiment_from_dict(_minimal(pool=_pool_model(api_key_secret=name)))


def test_secret_block_name_accepted_by_prefect_is_accepted():
    from prefect.types.names import BlockDocumentName
    from pydantic import TypeAdapter

    for name in ("openai", "or-key-2", "0key"):
        assert TypeAdapter(BlockDocumentName).validate_python(name) == name
        assert experiment_from_dict(_minimal(pool=_pool_model(api_key_secret=name)))


def test_root_may_be_a_file_uri_and_is_kept_as_given(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_minimal(root=f"file://{tmp_path}/run")))
    assert load_experiment(cfg).root == f"file://{tmp_path}/run"
    assert load_experiment(cfg, root=f"file://{tmp_path}/other").root == f"file://{tmp_path}/other"


def test_object_store_root_fails_at_load_in_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_minimal(root="s3://bucket/prefix")))
    with pytest.raises(ConfigError) as info:
        load_experiment(cfg)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{cfg}: root: run root 's3://bucket/prefix'")
    assert "SQLite" in msg and "file:// URI on a local or POSIX network filesystem" in msg
    cfg.write_text(yaml.safe_dump(_minimal()))
    with pytest.raises(ConfigError, match=r"^--root: run root 'gs://b/p': gs:// is not supported"):
        load_experiment(cfg, root="gs://b/p")
    with pytest.raises(ConfigError, match=r"^--root: run root 'file://runs/a' names host 'runs'"):
        load_experiment(cfg, root="file://runs/a")


def test_a_file_root_given_as_a_uri_is_refused_like_a_path(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        check_root(f"file://{tmp_path}/f/run")


def test_resolve_experiment_checks_a_root_given_with_a_loaded_experiment():
    exp = experiment_from_dict(_minimal())
    with pytest.raises(ConfigError, match=r"^root: run root 's3://b/p'"):
        resolve_experiment(exp, "s3://b/p")
    assert resolve_experiment(exp, "file:///tmp/r").root == "file:///tmp/r"


def test_router_presets_resolve_per_family_and_by_name():
    # Issue 16: `router_preset` for every family, `family_presets` per family, and a
    # `<family>-<preset>` entry of `families` naming one explicitly (so a run can train both).
    exp = experiment_from_dict(
        _minimal(
            router_preset="paper",
            family_presets={"knn": "tuned"},
            families=["mlp", "knn", "mlp-tuned"],
        )
    )
    assert experiment_from_dict(_minimal()).router_preset_of("mlp") == "tuned"
    assert [exp.router_preset_of(f) for f in exp.families] == ["paper", "tuned", "tuned"]


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"router_preset": "best"}, "router_preset.*unknown router preset 'best'.*tuned, paper"),
        ({"family_presets": {"knnn": "paper"}}, "family_presets.*unknown router family 'knnn'"),
        ({"family_presets": {"knn": "old"}}, "family_presets.*unknown router preset 'old'"),
        ({"families": ["mlp-best"]}, "families.*'mlp-best'.*suffixed -tuned or -paper"),
    ],
)
def test_bad_presets_name_the_field(over, message):
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict(_minimal(**over))
