"""The local S3 API server (S3Proxy via ops/s3/s3proxy.sh) that the lake tests run against."""

from __future__ import annotations

import urllib.error
import urllib.request

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyarrow import fs


def s3_filesystem(env: dict[str, str]) -> fs.S3FileSystem:
    """A client built the way an application would, from the AWS_* variables alone."""
    return fs.S3FileSystem(
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_override=env["AWS_ENDPOINT_URL"],
        region=env["AWS_REGION"],
        scheme=env["AWS_ENDPOINT_URL"].partition("://")[0],
    )


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.s3
def test_the_server_answers_and_up_prints_the_client_env(s3_server):
    # anonymous requests are refused: the server checks signatures
    assert http_status(s3_server.endpoint + "/") == 403
    assert s3_server.exports == s3_server.env()
    assert s3_server.env()["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{s3_server.port}"


@pytest.mark.s3
def test_the_bucket_fixture_gives_a_fresh_bucket(s3_server, s3_bucket):
    assert s3_bucket.url == f"s3://{s3_bucket.name}/lake"
    info = s3_filesystem(s3_server.env()).get_file_info(s3_bucket.name)
    assert info.type == fs.FileType.Directory
    with pytest.raises(OSError):
        fs.S3FileSystem(
            access_key=s3_server.identity,
            secret_key="not-the-credential",
            endpoint_override=s3_server.endpoint,
            region="us-east-1",
        ).get_file_info(f"{s3_bucket.name}/lake/nothing.parquet")


@pytest.mark.s3
def test_parquet_round_trip_listing_and_restart(s3_server, s3_bucket):
    s3 = s3_filesystem(s3_server.env())
    table = pa.table({"event_id": ["a", "b", "c"], "tokens": [1, 20, 300]})
    path = f"{s3_bucket.name}/lake/day=2026-01-01/part-0.parquet"
    pq.write_table(table, path, filesystem=s3)

    assert pq.read_table(path, filesystem=s3).equals(table)
    listed = s3.get_file_info(fs.FileSelector(f"{s3_bucket.name}/lake", recursive=True))
    assert [i.path for i in listed if i.type == fs.FileType.File] == [path]
    # a hive-partitioned lake is discovered as on S3: no directory shows up as an object
    lake = ds.dataset(
        f"{s3_bucket.name}/lake", filesystem=s3, format="parquet", partitioning="hive"
    )
    assert lake.to_table().num_rows == 3
    # the URL form, with the client settings in the environment only (as a subprocess gets them)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_server.env().items():
            mp.setenv(key, value)
        from_env, lake_path = fs.FileSystem.from_uri(s3_bucket.url)
        assert lake_path == f"{s3_bucket.name}/lake"
        assert pq.read_table(path, filesystem=from_env).equals(table)

    s3_server.restart()

    s3 = s3_filesystem(s3_server.env())
    assert pq.read_table(path, filesystem=s3).equals(table)
    listed = s3.get_file_info(fs.FileSelector(f"{s3_bucket.name}/lake", recursive=True))
    assert [i.path for i in listed if i.type == fs.FileType.File] == [path]


def test_a_test_asking_for_an_s3_fixture_is_deselected_by_not_s3(pytester):
    """``-m "not s3"`` never starts Java: asking for an S3 fixture by name marks the test."""
    pytester.makeconftest('pytest_plugins = ["tests.fixtures.s3_server"]\n')
    pytester.makepyfile(
        test_example="""
        def test_server(s3_server):
            raise AssertionError("never runs")

        def test_bucket(s3_bucket):
            raise AssertionError("never runs")

        def test_no_server():
            pass
        """
    )
    result = pytester.runpytest_inprocess("-m", "not s3", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=2)
