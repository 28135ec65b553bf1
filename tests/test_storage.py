"""Run folders on object storage: a real S3 server (moto's, on 127.0.0.1) holds the files raymeta writes itself and
Ray Train's; a stopped run continues from the bucket; the report and read_tables read from it."""

import pandas as pd
import pytest
from results_fixtures import rows
from s3_fixtures import s3_bucket, s3_keys

from raymeta.cli import main
from raymeta.errors import ConfigError
from raymeta.io.files import RunPaths, StoragePath, atomic_write, atomic_write_text, location, require_local
from raymeta.io.results import ResultsError, read_tables, table_paths, write_table


@pytest.fixture(scope="module")
def bucket():
    yield from s3_bucket()


def test_a_uri_is_a_storage_path_and_anything_else_a_local_one(tmp_path):
    paths = RunPaths("s3://bucket/runs//x/")
    assert paths.train_checkpoint == StoragePath("s3://bucket/runs/x/train/checkpoint.pt")
    assert (paths.root.name, str(paths.root.parent), paths.report.suffix) == ("x", "s3://bucket/runs", ".html")
    assert location(str(tmp_path)) == tmp_path and location("runs/s3:/x").parts == ("runs", "s3:", "x")
    with pytest.raises(ConfigError, match=r"'ftp://host/x' is not allowed: object storage is one of s3://, gs://"):
        location("ftp://host/x")
    with pytest.raises(ConfigError, match="names no bucket"):
        location("s3:///runs/x")
    with pytest.raises(ConfigError, match=r"raymeta deploy's run_dir s3://b/r is not allowed: .* a local path"):
        require_local("s3://b/r", "raymeta deploy's run_dir")


def test_files_on_s3_are_written_whole_listed_and_read_back(bucket):
    folder = location(f"{bucket}/unit")
    assert not folder.exists() and list(folder.rglob("*")) == []
    atomic_write_text(folder / "a" / "note.txt", "first")
    atomic_write_text(folder / "a" / "note.txt", "second")  # replaced, as a rename replaces
    assert (folder / "a" / "note.txt").read_text() == "second" and (folder / "a").is_dir()

    def fails(temporary):
        temporary.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(folder / "a" / "note.txt", fails)
    with pytest.raises(RuntimeError):
        atomic_write(folder / "b.txt", fails)
    # the old file is intact, the new one absent, and no temporary object is left behind
    assert s3_keys(bucket) == ["unit/a/note.txt"]
    assert (folder / "a" / "note.txt").read_text() == "second" and not (folder / "b.txt").exists()


@pytest.mark.slow
def test_result_tables_on_s3_are_read_by_folder_or_file_and_reported_there(bucket, capsys):
    first, second = rows("metamorphic", "a"), rows("individual", "b")
    folder = f"{bucket}/tables"
    written = [write_table(first, folder, name="a.parquet"), write_table(second, f"{folder}/more")]
    atomic_write_text(location(folder) / ".x.parquet.tmp.parquet", "a write in progress")  # hidden: skipped
    assert table_paths(folder) == sorted(written, key=str) and table_paths(str(written[0])) == written[:1]
    pd.testing.assert_frame_equal(
        read_tables(folder).sort_values("run_id", ignore_index=True),
        pd.concat([first, second], ignore_index=True),
        check_dtype=False,
    )
    with pytest.raises(ResultsError, match="glob patterns are for local paths"):
        table_paths(f"{folder}/*.parquet")
    with pytest.raises(ResultsError, match="holds no results table"):
        read_tables(f"{bucket}/unit")
    assert main(["report", folder, "--output", f"{bucket}/report.html", "--title", "from S3"]) == 0
    assert "2 table(s)" in capsys.readouterr().out
    assert "<title>from S3</title>" in location(f"{bucket}/report.html").read_text()
