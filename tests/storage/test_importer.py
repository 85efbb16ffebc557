import gzip
import hashlib
import json

import polars as pl
import pytest

from dars.storage import (
    RunLayout,
    StorageError,
    WriteCounts,
    import_generations,
    key_shards,
    scan_observations,
    write_observations,
)

CSV = """qid,llm,correct,prompt_tokens,completion_tokens,notes
1,gpt,true,100,20,x
1,gpt,0,100,20,y
2,gpt,0.5,100,20,
1,claude,1,50,10,z
"""
MAPPING = {"qid": "query_id", "llm": "model", "correct": "score", "notes": None}
PRICES = {"gpt": (1.0, 2.0), "claude": (3.0, 15.0)}


def _csv(tmp_path, text=CSV, name="gens.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _jsonl(tmp_path, records, name="gens.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _cols(root, *cols):
    return scan_observations(root).sort("model", "query_id", "decode_id").select(cols).collect()


def test_csv_decode_only_import(tmp_path, root):
    path = _csv(tmp_path)
    res = import_generations(path, root, MAPPING, dataset="demo", split="train", prices=PRICES)
    assert res.rows == 4 and res.counts == WriteCounts(4, 0, 0)
    assert res.partitions == (("demo", "train", "gpt"), ("demo", "train", "claude"))
    assert res.run_id == "import-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert (RunLayout(root).observation_file("demo", "train", "gpt", 0)).is_file()
    assert (RunLayout(root).observation_file("demo", "train", "claude", 0)).is_file()
    out = _cols(root, "query_id", "model", "view", "rewrite_id", "decode_id", "score", "cost_usd")
    assert out.rows() == [
        ("1", "claude", "train", -1, 0, 1.0, pytest.approx((50 * 3 + 10 * 15) / 1e6)),
        ("1", "gpt", "train", -1, 0, 1.0, pytest.approx((100 * 1 + 20 * 2) / 1e6)),
        ("1", "gpt", "train", -1, 1, 0.0, pytest.approx(140 / 1e6)),
        ("2", "gpt", "train", -1, 0, 0.5, pytest.approx(140 / 1e6)),
    ]
    full = scan_observations(root).collect()
    assert set(full["status"]) == {"ok"} and set(full["attempts"]) == {1}
    assert set(full["prompt_sha256"]) == {""} and full["response"].null_count() == 4

    # Importing the same file again adds nothing.
    again = import_generations(path, root, MAPPING, dataset="demo", split="train", prices=PRICES)
    assert again.counts == WriteCounts(0, 0, 4)
    assert scan_observations(root).collect().height == 4


def test_jsonl_with_rewrites_views_and_own_columns(tmp_path, root):
    recs = [
        {
            "query_id": "a",
            "model": "m",
            "score": 1,
            "rewrite_id": 0,
            "split": "test",
            "dataset": "gpqa",
            "cost_usd": 0.01,
            "response": "B",
            "prompt": "Q?",
        },
        {
            "query_id": "a",
            "model": "m",
            "score": 0,
            "rewrite_id": 0,
            "split": "test",
            "dataset": "gpqa",
            "cost_usd": 0.02,
            "response": None,
            "prompt": "Q?",
        },
        {
            "query_id": "a",
            "model": "m",
            "score": False,
            "rewrite_id": -1,
            "split": "test",
            "dataset": "gpqa",
            "cost_usd": 0.0,
            "parse_ok": False,
        },
    ]
    path = _jsonl(tmp_path, recs)
    res = import_generations(path, root, run_id="mine")
    assert res.counts == WriteCounts(3, 0, 0)
    out = (
        scan_observations(root)
        .sort("rewrite_id", "decode_id")
        .select(
            "view",
            "rewrite_id",
            "decode_id",
            "score",
            "cost_usd",
            "parse_ok",
            "run_id",
            "prompt_sha256",
        )
        .collect()
    )
    sha = hashlib.sha256(b"Q?").hexdigest()
    assert out.rows() == [
        ("test_decode", -1, 0, 0.0, 0.0, False, "mine", ""),
        ("test_rewrite", 0, 0, 1.0, 0.01, True, "mine", sha),
        ("test_rewrite", 0, 1, 0.0, 0.02, True, "mine", sha),
    ]


def test_parquet_with_typed_columns_and_no_cost(tmp_path, root):
    path = tmp_path / "g.parquet"
    pl.DataFrame(
        {
            "query_id": [7, 7, 8],
            "model": ["m", "m", "m"],
            "score": [1.0, 0.0, 1.0],
            "decode_id": [3, 4, 0],
        }
    ).write_parquet(path)
    import_generations(path, root, dataset="demo", split="train")
    out = _cols(root, "query_id", "decode_id", "cost_usd", "prompt_tokens")
    # Cost-blind data: no cost and no tokens give zeros rather than an error.
    assert out.rows() == [("7", 3, 0.0, 0), ("7", 4, 0.0, 0), ("8", 0, 0.0, 0)]


def test_gzipped_jsonl(tmp_path, root):
    path = tmp_path / "g.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"query_id": "a", "model": "m", "score": 1}) + "\n")
    assert import_generations(path, root, dataset="demo", split="train").rows == 1


def test_existing_keys_stay_in_their_shard(tmp_path, root, make_obs):
    # The decode stage stored a failed generation in shard 2; the import completes it there.
    write_observations(root, [make_obs("a", "m", -1, 0, status="error", attempts=4)], shard=2)
    path = _jsonl(
        tmp_path,
        [{"query_id": "a", "model": "m", "score": 1}, {"query_id": "b", "model": "m", "score": 0}],
    )
    res = import_generations(path, root, dataset="demo", split="train")
    assert res.counts == WriteCounts(2, 0, 0)
    where = key_shards(root, "demo", "train", "m").sort("query_id")
    assert where.select("query_id", "shard").rows() == [("a", 2), ("b", 0)]
    out = scan_observations(root, query_id="a").collect()
    assert out.select("status", "attempts").rows() == [("ok", 5)]


def _fails(path, root, *args, **kwargs) -> str:
    with pytest.raises(StorageError) as exc:
        import_generations(path, root, *args, **kwargs)
    assert not root.exists(), "nothing may be written when the file is bad"
    msg = str(exc.value)
    assert msg.startswith("import failed, nothing was written") or str(path) in msg
    assert str(path) in msg
    return msg


def test_score_out_of_range_names_row_and_column(tmp_path, root):
    path = _csv(tmp_path, "query_id,model,score\na,m,1\nb,m,1.5\nc,m,-0.1\n")
    msg = _fails(path, root, dataset="demo", split="train")
    assert f"{path}: row 2, column 'score': must be in [0, 1] (got 1.5)" in msg
    assert f"{path}: row 3, column 'score': must be in [0, 1] (got -0.1)" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("query_id,model,score\na,m,abc\n", "row 1, column 'score': not a number (got 'abc')"),
        ("query_id,model,score\na,m,nan\n", "row 1, column 'score': must be finite"),
        ("query_id,model,score\na,m,\n", "row 1, column 'score': value missing"),
        ("query_id,model,score\n,m,1\n", "row 1, column 'query_id': value missing"),
        ("query_id,model,score\na,m/x,1\n", "row 1, column 'model': not usable as a name"),
        (
            "query_id,model,score,decode_id\na,m,1,0\na,m,0,0\n",
            "rows 1, 2 have the same key (dataset='demo', split='train', query_id='a', model='m',"
            " rewrite_id=-1, decode_id=0)",
        ),
        (
            "query_id,model,score,decode_id\na,m,1,1.5\n",
            "row 1, column 'decode_id': not an integer (got '1.5')",
        ),
        ("query_id,model,score,cost_usd\na,m,1,-2\n", "row 1, column 'cost_usd': must be >= 0"),
        (
            "query_id,model,score,cost_usd\na,m,1,0.1\nb,m,1,\n",
            "row 2, column 'cost_usd': value missing",
        ),
        (
            "query_id,model,score,rewrite_id\na,m,1,-3\n",
            "row 1, column 'rewrite_id': must be >= -1",
        ),
        (
            "query_id,model,score,view\na,m,1,test_decode\n",
            "row 1, column 'view': view 'train' goes with split 'train'",
        ),
        (
            "query_id,model,score,parse_ok\na,m,1,maybe\n",
            "row 1, column 'parse_ok': not a boolean (got 'maybe')",
        ),
        ("query_id,model\na,m\n", "missing required column(s) ['score']"),
        ("query_id,model,score,temp\na,m,1,0.7\n", "unknown column(s) ['temp']"),
        ("query_id,model,score,prompt_tokens\na,m,1,5\n", "token counts without cost_usd"),
    ],
)
def test_bad_csv_rows(tmp_path, root, text, expected):
    path = _csv(tmp_path, text)
    assert expected in _fails(path, root, dataset="demo", split="train")


def test_missing_dataset_and_bad_split(tmp_path, root):
    path = _csv(tmp_path, "query_id,model,score,split\na,m,1,dev\n")
    msg = _fails(path, root)
    assert "no 'dataset' column and no dataset= argument" in msg
    msg = _fails(path, root, dataset="demo")
    assert "row 1, column 'split': must be one of ['train', 'test'] (got 'dev')" in msg


def test_column_and_argument_must_agree(tmp_path, root):
    path = _csv(tmp_path, "query_id,model,score,dataset\na,m,1,demo\nb,m,1,gpqa\n")
    msg = _fails(path, root, dataset="demo", split="train")
    assert "row 2, column 'dataset': differs from the argument dataset='demo' (got 'gpqa')" in msg


def test_mapping_errors(tmp_path, root):
    path = _csv(tmp_path)
    msg = _fails(path, root, {"nope": "query_id"}, dataset="demo", split="train")
    assert "mapping names column(s) ['nope'] not in the file" in msg
    msg = _fails(path, root, {"qid": "qid2"}, dataset="demo", split="train")
    assert "mapping targets {'qid': 'qid2'} are not importable columns" in msg
    msg = _fails(path, root, {**MAPPING, "notes": "model"}, dataset="demo", split="train")
    assert "more than one column would be named ['model']" in msg


def test_prices_must_cover_every_model(tmp_path, root):
    msg = _fails(
        _csv(tmp_path), root, MAPPING, dataset="demo", split="train", prices={"gpt": (1.0, 1.0)}
    )
    assert "row 4, column 'model': no entry for this model in prices (got 'claude')" in msg


def test_bad_jsonl_lines(tmp_path, root):
    path = tmp_path / "g.jsonl"
    path.write_text('{"query_id": "a", "model": "m", "score": 1}\n\n[1, 2]\n{"x": \n')
    msg = _fails(path, root, dataset="demo", split="train")
    assert "row 3: expected a JSON object, got list" in msg
    assert "row 4: not valid JSON" in msg
    path.write_text('{"query_id": "a", "model": "m", "score": {"v": 1}}\n')
    assert "row 1, column 'score': nested value" in _fails(path, root, dataset="d", split="train")


def test_unsupported_or_missing_file(tmp_path, root):
    path = tmp_path / "g.xlsx"
    path.write_bytes(b"x")
    assert "unsupported file type" in _fails(path, root)
    assert "file not found" in _fails(tmp_path / "none.csv", root)


# ------------------------------------------------------------------------------------------------
# names, splits and queries (issue 11)
# ------------------------------------------------------------------------------------------------
def test_slug():
    from dars.storage.importer import slug

    assert slug("gpt-4o[json-schema]") == "gpt-4o-json-schema"
    assert slug("college_mathematics/few") == "college_mathematics-few"
    assert slug("_hidden model") == "hidden-model" and slug("???") == "x"


def _named(tmp_path, rows):
    return _jsonl(tmp_path, rows, name="named.jsonl")


def test_rename_values_and_slugs_are_applied_and_recorded(tmp_path, root):
    path = _named(
        tmp_path,
        [
            {"query_id": "a", "model": "gpt-4o[js]", "score": 1, "dataset": "math/few"},
            {"query_id": "a", "model": "llama 3", "score": 0, "dataset": "math/few"},
        ],
    )
    res = import_generations(
        path, root, split="train", rename_values={"model": {"gpt-4o[js]": "gpt4o"}}, slug_names=True
    )
    assert res.renamed == {
        "dataset": {"math/few": "math-few"},
        "model": {"gpt-4o[js]": "gpt4o", "llama 3": "llama-3"},
    }
    assert sorted(_cols(root, "model")["model"].to_list()) == ["gpt4o", "llama-3"]
    manifest = json.loads(res.manifest.read_text())
    assert res.manifest == RunLayout(root).import_manifest(res.run_id)
    assert manifest["renamed_values"] == res.renamed and manifest["rows"] == 2


def test_renames_that_clash_or_miss_are_errors(tmp_path, root):
    path = _named(
        tmp_path,
        [
            {"query_id": "a", "model": "m/1", "score": 1},
            {"query_id": "a", "model": "m:1", "score": 0},
        ],
    )
    msg = _fails(path, root, dataset="d", split="train", slug_names=True)
    assert "model: different values would get the same name: {'m-1': ['m/1', 'm:1']}" in msg
    msg = _fails(
        path,
        root,
        dataset="d",
        split="train",
        rename_values={"model": {"absent": "x", "m/1": "a/b"}},
    )
    assert "value(s) ['absent'] do not occur in the file" in msg
    assert "new name(s) ['a/b'] are not path-safe either" in msg


def test_seeded_test_split_by_query(tmp_path, root):
    rows = [{"query_id": f"q{i}", "model": m, "score": 1} for i in range(40) for m in ("a", "b")]
    res = import_generations(_named(tmp_path, rows), root, dataset="d", test_fraction=0.25, seed=1)
    per_query = _cols(root, "query_id", "split").unique()
    assert per_query.height == 40  # one split per query, both models alike
    n_test = per_query.filter(pl.col("split") == "test").height
    assert 4 <= n_test <= 18 and res.datasets["d"]["queries"]["test"] == n_test
    other = tmp_path / "other-run"
    msg = _fails(_named(tmp_path, rows), other, dataset="d", split="train", test_fraction=0.25)
    assert "--test-fraction applies only when there is no split column and no --split" in msg


def test_questions_go_to_the_query_store_once_per_query(tmp_path, root):
    from dars.storage.queries import read_queries

    rows = [
        {"query_id": "q1", "model": "a", "score": 1, "question": "Q one?", "gold": "1"},
        {"query_id": "q1", "model": "b", "score": 0, "question": "Q one?", "gold": "1"},
        {"query_id": "q2", "model": "a", "score": 1, "question": "Q two?", "task_type": "math"},
    ]
    res = import_generations(
        _named(tmp_path, rows), root, dataset="d", split="train", task_types=["math", "mc"]
    )
    q = read_queries(root, "d").sort("query_id")
    assert q.select("query_id", "question", "gold", "task_type").rows() == [
        ("q1", "Q one?", "1", None),
        ("q2", "Q two?", None, "math"),
    ]
    assert res.datasets["d"]["queries_stored"] and res.datasets["d"]["decodes_per_pair"] == [1, 1]


def test_query_texts_must_agree_and_need_a_question(tmp_path, root):
    rows = [
        {"query_id": "q1", "model": "a", "score": 1, "question": "Q one?"},
        {"query_id": "q1", "model": "b", "score": 0, "question": "Q 1?"},
    ]
    msg = _fails(_named(tmp_path, rows), root, dataset="d", split="train")
    assert "query 'q1' of dataset 'd' has 2 different values in column 'question'" in msg
    rows = [{"query_id": "q1", "model": "a", "score": 1, "gold": "3"}]
    msg = _fails(_named(tmp_path, rows), root, dataset="d", split="train")
    assert "column(s) ['gold'] need a question column" in msg
    rows = [{"query_id": "q1", "model": "a", "score": 1, "question": "Q", "task_type": "essay"}]
    msg = _fails(_named(tmp_path, rows), root, dataset="d", split="train", task_types=["mc"])
    assert "unknown task type; available: mc" in msg
    assert not (root / "observations").exists() and not (root / "queries").exists()
