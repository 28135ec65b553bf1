"""The results schema: round trips, one-call reads, and clear errors for tables that break it."""

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from results_fixtures import example_frame, rows

from raymeta.config.loading import load_config
from raymeta.config.schema import method_name
from raymeta.io.results import (
    RESULT_COLUMNS,
    SCHEMA,
    ResultsError,
    RunIdentity,
    read_tables,
    result_frame,
    validate_frame,
    write_table,
)
from raymeta.io.results import RESULT_COLUMNS as REEXPORTED
from raymeta.stages.identity import run_identity


def test_schema_round_trips_through_parquet(tmp_path):
    frame = example_frame(with_trials=True)
    path = write_table(frame, tmp_path)
    back, expected = read_tables(path), validate_frame(frame)
    exact = RESULT_COLUMNS + ["trial_id", "param.train.lr"]
    assert_frame_equal(back[exact], expected[exact])
    # a bool parameter missing in some rows is an object column: None or NaN both read as missing
    column = "param.train.incremental"
    assert back[column].isna().equals(expected[column].isna())
    assert back[column].dropna().tolist() == expected[column].dropna().tolist()
    assert list(back.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert {c: str(back[c].dtype) for c in ("stage", "gamma", "seen", "params")} == {
        "stage": "int64",
        "gamma": "float64",
        "seen": "bool",
        "params": "int64",
    }
    assert REEXPORTED == RESULT_COLUMNS and list(SCHEMA) == RESULT_COLUMNS


def test_result_frame_follows_the_schema_for_final_and_train_rows():
    identity = RunIdentity(
        run_id="r",
        method="metamorphic",
        config_hash="abc",
        dataset="digits",
        architecture="resnet14-8-8-8",
        gamma_pool=(0.0, 0.5),
    )
    row = {"gamma": 0.75, "samples": 1, "accuracy": 0.5, "loss": 1.0, "params": 10, "macs": 20, "wall_time_s": 0.1}
    frame = result_frame(
        [row, {**row, "gamma": 0.5}], identity, stage=2, epoch=7, phase="train", split="validation", train_time_s=12.5
    )
    assert list(frame.columns) == RESULT_COLUMNS
    assert frame.loc[0, "phase"] == "train" and frame.loc[0, "train_time_s"] == 12.5
    assert frame["seen"].tolist() == [False, True]  # against the identity's pool, bounds included
    assert frame.loc[0, "split"] == "validation"
    assert (frame.loc[0, "run_id"], frame.loc[0, "config_hash"], frame.loc[0, "architecture"]) == (
        "r",
        "abc",
        "resnet14-8-8-8",
    )
    with pytest.raises(ResultsError, match="split 'train' is not allowed: use validation or test"):
        result_frame([row], identity, stage=0, epoch=1, split="train")


def test_a_row_may_carry_its_own_common_columns_and_the_optional_ones_only():
    """Deployment rows: the split and seen per row, a budget and per-block columns; an unknown key is an error."""
    identity = RunIdentity(
        run_id="r",
        method="metamorphic",
        config_hash="abc",
        dataset="digits",
        architecture="resnet14-8-8-8",
        gamma_pool=(0.0, 0.5),
    )
    row = {
        "gamma": float("nan"),
        "samples": 1,
        "accuracy": 0.5,
        "loss": 1.0,
        "params": 10,
        "macs": 20,
        "wall_time_s": 0.1,
        "seen": True,
        "budget": "macs<=20",
        "gamma.stage3.block1": 0.25,
    }
    frame = result_frame([row, {**row, "split": "test"}], identity, stage=0, epoch=1, split="validation")
    assert frame["split"].tolist() == ["validation", "test"] and frame["seen"].all()
    assert list(frame.columns) == [*RESULT_COLUMNS, "budget", "gamma.stage3.block1"]
    with pytest.raises(ResultsError, match="unknown column.*colour"):
        result_frame([{**row, "colour": "red"}], identity, stage=0, epoch=1, split="test")


def test_the_run_identity_comes_from_the_config():
    config = load_config(None, ["train.gamma_pool=[0.0,0.5]", "model.depth=14", "model.widths=[8,8,16]"])
    identity = run_identity(config, run_id="r", dataset="digits")
    assert identity == RunIdentity(
        run_id="r",
        method=method_name(config),
        config_hash=config.hash(),
        dataset="digits",
        architecture="resnet14-8-8-16",
        gamma_pool=(0.0, 0.5),
    )
    baseline = run_identity(config, run_id="b", dataset="digits", method="skip", config_hash="settings")
    assert (baseline.method, baseline.config_hash) == ("skip", "settings")


def test_reading_many_tables_is_one_call_over_files_folders_and_globs(tmp_path):
    write_table(rows("metamorphic", "a"), tmp_path / "a" / "results")
    write_table(rows("individual", "b"), tmp_path / "b" / "results")
    write_table(rows("neumeta", "c"), tmp_path / "c")
    (tmp_path / "a" / "results" / ".eval-x.parquet.123.tmp").write_bytes(b"half written")
    frame = read_tables([tmp_path / "a", str(tmp_path / "b" / "results" / "*.parquet"), tmp_path / "c"])
    assert sorted(set(frame["method"])) == ["individual", "metamorphic", "neumeta"]
    assert len(read_tables(tmp_path)) == 3 * len(rows("metamorphic", "a"))  # a folder is searched recursively


def test_a_missing_column_is_a_clear_error(tmp_path):
    frame = rows("metamorphic", "a").drop(columns=["macs"])
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    with pytest.raises(ResultsError, match=r"bad\.parquet lacks column\(s\) macs"):
        read_tables(path)


@pytest.mark.parametrize(
    "column, value, found, expected",
    [
        ("accuracy", "high", "string", "float"),
        ("stage", 1.5, "float", "int"),
        ("seen", "yes", "string", "bool"),
        ("run_id", 3, "int", "string"),
    ],
)
def test_a_wrong_type_names_file_column_found_and_expected(tmp_path, column, value, found, expected):
    frame = rows("metamorphic", "a")
    frame[column] = value
    path = tmp_path / "typed.parquet"
    frame.to_parquet(path)
    with pytest.raises(ResultsError) as error:
        read_tables(path)
    message = str(error.value)
    assert "typed.parquet" in message and f"'{column}'" in message
    assert f"type {found}" in message and f"expected {expected}" in message


def test_unknown_columns_bad_phase_and_unreadable_files_are_errors(tmp_path):
    with pytest.raises(ResultsError, match="unknown column.*acuracy.*trial_id, trial_status, latency_ms.* and param"):
        validate_frame(rows("m", "a").assign(acuracy=1.0))
    with pytest.raises(ResultsError, match="phase 'eval' is not allowed"):
        validate_frame(rows("m", "a").assign(phase="eval"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ResultsError, match="junk.parquet is not a readable Parquet"):
        read_tables(tmp_path / "junk.parquet")
    with pytest.raises(ResultsError, match="does not exist"):
        read_tables(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="holds no results table"):
        read_tables(tmp_path / "empty")


def test_writing_never_touches_existing_tables_and_never_leaves_a_bad_one(tmp_path):
    first = write_table(rows("m", "a"), tmp_path)
    before = first.read_bytes()
    write_table(rows("m", "b"), tmp_path)
    with pytest.raises(ResultsError):
        write_table(rows("m", "c").drop(columns=["loss"]), tmp_path)
    assert first.read_bytes() == before and len(list(tmp_path.iterdir())) == 2


def test_a_table_from_before_the_split_column_reads_as_test_throughout(tmp_path):
    # Before the validation split existed, monitor rows (phase train) were measured on the test split too.
    old = pd.concat([rows("metamorphic", "a"), rows("metamorphic", "a", phase="train", gammas=[0.0, 0.5])])
    old.drop(columns=["split"]).to_parquet(tmp_path / "old.parquet")
    write_table(rows("metamorphic", "b", phase="train", gammas=[0.0]), tmp_path / "new")
    frame = read_tables([tmp_path / "old.parquet", tmp_path / "new"])
    assert list(frame.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert set(frame.loc[frame["run_id"] == "a", "split"]) == {"test"}
    assert frame.loc[frame["run_id"] == "b", "split"].tolist() == ["validation"]
    with pytest.raises(ResultsError, match="lacks column.*split"):  # writing one still needs the column
        write_table(old.drop(columns=["split"]), tmp_path / "again")


def test_tune_columns_are_optional_and_survive_concatenation(tmp_path):
    write_table(rows("metamorphic", "a"), tmp_path)
    write_table(rows("metamorphic", "t", trial_id="t1", **{"param.train.lr": 0.01}), tmp_path)
    frame = read_tables(tmp_path)
    assert frame["trial_id"].notna().sum() == len(rows("m", "a")) and "param.train.lr" in frame.columns
    assert isinstance(validate_frame(frame), pd.DataFrame)


def test_health_columns_are_optional_floats_that_survive_concatenation(tmp_path):
    health = {"alpha.stage3.block1": 0.25, "rec.stages.2.1.conv1.weight": 1}  # an int widens to float
    write_table(rows("metamorphic", "a", phase="train", gammas=[0.0, 0.5], **health), tmp_path)
    write_table(rows("individual", "b"), tmp_path)  # a table without them
    frame = read_tables(tmp_path)
    trained = frame["phase"] == "train"
    assert list(frame.columns[len(RESULT_COLUMNS) :]) == ["alpha.stage3.block1", "rec.stages.2.1.conv1.weight"]
    assert frame.loc[trained, "rec.stages.2.1.conv1.weight"].tolist() == [1.0, 1.0]
    assert frame.loc[~trained, "alpha.stage3.block1"].isna().all()
    assert str(frame["rec.stages.2.1.conv1.weight"].dtype) == "float64"
    with pytest.raises(ResultsError, match="column 'alpha.stage3.block1' has type string.*expected float"):
        validate_frame(rows("m", "a").assign(**{"alpha.stage3.block1": "off"}))
    with pytest.raises(ResultsError, match="unknown column.*'?rec\\.'?.*param.<name>, alpha.<name>, rec.<name>"):
        validate_frame(rows("m", "a").assign(**{"rec.": 1.0}))  # a prefix without a name
