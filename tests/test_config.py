from pathlib import Path

import pytest

from dars.config import ConfigError, Experiment, experiment_from_dict, load_experiment

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
SHIPPED_POOL_SIZES = {"demo": 6, "paper": 6, "local": 2}


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
