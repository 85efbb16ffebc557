"""Hub-benchmark loaders on hand-made files, the cache, and fast offline failure."""

from __future__ import annotations

import json
import time

import polars as pl
import pytest

import dars.benchmarks as B
from dars.benchmarks.base import BenchmarkDataError, BenchmarkUnavailableError
from dars.benchmarks.drop import drop_query_id
from dars.benchmarks.gpqa import shuffled_order
from dars.storage.cache import benchmark_cache_dir, benchmark_cache_file

GPQA_ROWS = [
    {
        "Record ID": "recA1",
        "Question": "Which particle mediates the electromagnetic force?",
        "Correct Answer": "Photon",
        "Incorrect Answer 1": "Gluon",
        "Incorrect Answer 2": "W boson",
        "Incorrect Answer 3": "Graviton",
        "Subdomain": "Particle physics",
        "High-level domain": "Physics",
    },
    {
        "Record ID": "recB2",
        "Question": "What is the oxidation state of Mn in KMnO4?",
        "Correct Answer": "+7",
        "Incorrect Answer 1": "+2",
        "Incorrect Answer 2": "+4",
        "Incorrect Answer 3": "+6",
        "Subdomain": "Inorganic chemistry",
        "High-level domain": "Chemistry",
    },
    {
        "Record ID": "recC3",
        "Question": "Which organelle hosts oxidative phosphorylation?",
        "Correct Answer": "Mitochondrion",
        "Incorrect Answer 1": "Golgi apparatus",
        "Incorrect Answer 2": "Lysosome",
        "Incorrect Answer 3": "Ribosome",
        "Subdomain": "Molecular Biology",
        "High-level domain": "Biology",
    },
]


def _write(rows, path):
    df = pl.DataFrame(rows)
    if path.suffix == ".csv":
        df.write_csv(path)
    else:
        df.write_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_gpqa_loads_made_up_rows(tmp_path, suffix):
    items = B.get("gpqa").load(path=_write(GPQA_ROWS, tmp_path / f"gpqa{suffix}"))
    assert [it.query_id for it in items] == ["recA1", "recB2", "recC3"]
    for row, it in zip(GPQA_ROWS, items, strict=True):
        assert it.task_type == "mc" and len(it.choices) == 4
        assert it.choices[ord(it.gold) - ord("A")] == row["Correct Answer"]
        assert sorted(it.choices) == sorted(
            [row["Correct Answer"]] + [row[f"Incorrect Answer {k}"] for k in (1, 2, 3)]
        )
        assert it.meta["domain"] == row["High-level domain"]
        # the gold letter is what the scorer accepts
        assert B.score("gpqa", f"Final Answer: {it.gold}", it).value == 1.0


def test_gpqa_shuffle_is_deterministic_and_varies(tmp_path):
    rows = [dict(GPQA_ROWS[0], **{"Record ID": f"rec{i}"}) for i in range(40)]
    path = _write(rows, tmp_path / "g.parquet")
    a = B.get("gpqa").load(path=path)
    b = B.get("gpqa").load(path=_write(rows[::-1], tmp_path / "g_rev.parquet"))
    by_id = {it.query_id: it for it in b}
    assert all(by_id[it.query_id].choices == it.choices for it in a)
    assert len({it.gold for it in a}) == 4  # the correct answer is not always in one slot
    assert shuffled_order("rec0") == shuffled_order("rec0")


def test_gpqa_without_record_id_hashes_question(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "Record ID"} for r in GPQA_ROWS]
    items = B.get("gpqa").load(path=_write(rows, tmp_path / "g.csv"))
    again = B.get("gpqa").load(path=_write(rows[::-1], tmp_path / "g2.csv"))
    assert all(it.query_id.startswith("gpqa-") for it in items)
    assert sorted(it.query_id for it in items) == sorted(it.query_id for it in again)


def test_gpqa_errors_name_file_row_and_field(tmp_path):
    rows = [dict(r) for r in GPQA_ROWS]
    rows[1]["Incorrect Answer 2"] = "  "
    path = _write(rows, tmp_path / "bad.csv")
    with pytest.raises(BenchmarkDataError, match=r"bad\.csv: row 2: field 'Incorrect Answer 2'"):
        B.get("gpqa").load(path=path)
    no_col = _write([{k: v for k, v in r.items() if k != "Correct Answer"} for r in GPQA_ROWS],
                    tmp_path / "nocol.parquet")  # fmt: skip
    with pytest.raises(BenchmarkDataError, match=r"nocol\.parquet: missing column\(s\) \['Correct"):
        B.get("gpqa").load(path=no_col)


def test_math500_loader_and_hash_ids(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(
        json.dumps({"problem": "What is $1+1$?", "answer": "2", "unique_id": "test/a/1.json"})
        + "\n\n"
        + json.dumps({"problem": "What is $2+2$?", "answer": 4, "level": 1})
        + "\n"
    )
    items = B.get("math500").load(path=path)
    assert items[0].query_id == "test/a/1.json" and items[0].gold == "2"
    assert items[1].query_id.startswith("math-") and items[1].gold == "4"
    assert items[1].meta == {"level": 1}
    path.write_text(
        json.dumps({"problem": "x", "answer": "1"}) + "\n" + json.dumps({"problem": ""})
    )
    with pytest.raises(BenchmarkDataError, match=r"m\.jsonl: row 2: field 'problem'"):
        B.get("math500").load(path=path)


def test_drop_hub_schema_rows(tmp_path):
    rows = [
        {
            "section_id": "nfl_1",
            "query_id": "q1",
            "passage": "The Bears kicked a 30-yard field goal.",
            "question": "How long was the field goal?",
            "answers_spans": {"spans": ["30", "30-yard"], "types": ["number", "span"]},
        },
        {  # same passage and question again: merged, answers united
            "section_id": "nfl_1",
            "query_id": "q2",
            "passage": "The Bears  kicked a 30-yard field goal.",
            "question": "How long was the field goal?",
            "answers_spans": {"spans": ["30 yards"], "types": ["span"]},
        },
        {
            "section_id": "nfl_1",
            "query_id": "q3",
            "passage": "The Bears kicked a 30-yard field goal.",
            "question": "Who kicked?",
            "answers_spans": {"spans": [], "types": []},  # no answer: skipped
        },
    ]
    path = _write(rows, tmp_path / "validation.parquet")
    items = B.get("drop800").load(path=path)
    assert len(items) == 1
    it = items[0]
    assert it.gold == ("30", "30-yard", "30 yards")
    assert it.query_id == drop_query_id(rows[0]["passage"], rows[0]["question"])
    assert it.meta["source_ids"] == ["q1", "q2"]


def test_drop_answer_objects_with_validated_answers_as_columns(tmp_path):
    path = tmp_path / "drop.jsonl"
    row = {
        "passage": "In 1990 and 1994 the team won.",
        "question": "In which years did the team win?",
        "answer": {"number": "", "date": {"day": "", "month": "", "year": ""},
                   "spans": ["1990", "1994"]},
        "validated_answers": {"number": ["", ""],
                              "date": [{}, {"day": "", "month": "", "year": "1990"}],
                              "spans": [["1994", "1990"], []]},
    }  # fmt: skip
    path.write_text(json.dumps(row) + "\n")
    (it,) = B.get("drop800").load(path=path)
    assert it.gold == ("1990 | 1994", "1994 | 1990", "1990")
    assert B.get("drop800").score("Final Answer: 1994 | 1990", it).value == 1.0


def test_drop_unknown_schema_names_columns(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"text": "a", "label": 1}) + "\n")
    with pytest.raises(BenchmarkDataError, match=r"unrecognised DROP columns \['label', 'text'\]"):
        B.get("drop800").load(path=path)


def test_drop_subset_is_order_independent(tmp_path, drop_dev_file):
    import gzip

    lines = gzip.open(drop_dev_file, "rt").read().splitlines()[:400]
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text("\n".join(lines) + "\n")
    b.write_text("\n".join(lines[::-1]) + "\n")
    sa = B.get("drop800", n_items=50).load(path=a)
    sb = B.get("drop800", n_items=50).load(path=b)
    assert [it.query_id for it in sa] == [it.query_id for it in sb]
    assert len(sa) == 50


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("DARS_CACHE_DIR", str(tmp_path / "c"))
    assert benchmark_cache_dir() == tmp_path / "c" / "benchmarks"
    assert benchmark_cache_file("math500") == tmp_path / "c" / "benchmarks" / "math500.parquet"
    assert benchmark_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("DARS_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert benchmark_cache_dir() == tmp_path / "home" / ".cache" / "dars" / "benchmarks"


@pytest.mark.parametrize(
    ("name", "cache_name", "extra"),
    [
        ("gpqa", "gpqa_main.parquet", "HF_TOKEN"),
        ("math500", "math500.parquet", "HuggingFaceH4/MATH-500"),
        ("drop800", "drop_validation.parquet", "ucinlp/drop"),
    ],
)
@pytest.mark.parametrize("how", ["offline_env", "no_route"])
def test_offline_failure_is_fast_and_says_how(cache_dir, monkeypatch, name, cache_name, extra, how):
    if how == "offline_env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # hub allowed but unreachable: an endpoint nobody listens on
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(BenchmarkUnavailableError) as err:
        B.get(name).load()
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "path=" in msg and str(cache_dir / cache_name) in msg and extra in msg
    assert ("HF_HUB_OFFLINE is set" in msg) == (how == "offline_env")


def test_prepare_cache_then_load_offline(cache_dir, math500_file):
    bench = B.get("math500")
    dest = bench.prepare_cache(math500_file)
    assert dest == cache_dir / "math500.parquet" and dest.is_file()
    from_cache = bench.load()
    assert from_cache == bench.load(path=math500_file)


def test_prepare_cache_validates_before_writing(cache_dir, tmp_path):
    bad = _write([{k: v for k, v in GPQA_ROWS[0].items() if k != "Question"}], tmp_path / "b.csv")
    with pytest.raises(BenchmarkDataError):
        B.get("gpqa").prepare_cache(bad)
    assert not (cache_dir / "gpqa_main.parquet").exists()
    good = _write(GPQA_ROWS, tmp_path / "g.csv")
    B.get("gpqa").prepare_cache(good)
    assert [it.query_id for it in B.get("gpqa").load()] == ["recA1", "recB2", "recC3"]


def test_drop_prepare_cache_round_trip(cache_dir, drop_nested_file):
    bench = B.get("drop800", n_items=None)
    bench.prepare_cache(drop_nested_file)
    assert bench.load() == bench.load(path=drop_nested_file)


def _hub_allowed(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("dars.benchmarks.sources._hub_reachable", lambda *a, **k: None)


def test_hub_download_is_cached_as_parquet(cache_dir, monkeypatch, tmp_path):
    """The hub path with huggingface_hub replaced by a local file: first load downloads into the
    cache (asking for the right repo and file), the second reads the cache only."""
    _hub_allowed(monkeypatch)
    src = _write(GPQA_ROWS, tmp_path / "gpqa_main.csv")
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs["repo_type"], kwargs["etag_timeout"]))
        return str(src)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    first = B.get("gpqa").load()
    assert calls == [("Idavidrein/gpqa", "gpqa_main.csv", "dataset", 10.0)]
    assert (cache_dir / "gpqa_main.parquet").is_file()
    assert B.get("gpqa").load() == first and len(calls) == 1


def test_gated_hub_error_says_how_to_get_access(cache_dir, monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    _hub_allowed(monkeypatch)

    def gated(*args, **kwargs):
        err = GatedRepoError.__new__(GatedRepoError)
        Exception.__init__(err, "401 gated")
        raise err

    monkeypatch.setattr("huggingface_hub.hf_hub_download", gated)
    with pytest.raises(BenchmarkUnavailableError, match="gated") as err:
        B.get("gpqa").load()
    assert "HF_TOKEN" in str(err.value) and "huggingface.co/datasets/Idavidrein/gpqa" in str(
        err.value
    )
