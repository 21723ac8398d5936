"""Settings: security options, their consistency checks, secret masking, operations settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline._exceptions import ConfigError
from pipeline.object_lake import ObjectLake
from pipeline.settings import Settings

SECRET = "s3cr3t-Pa55word-for-tests"

SASL = dict(
    kafka_security_protocol="SASL_SSL",
    kafka_sasl_mechanism="SCRAM-SHA-512",
    kafka_sasl_username="alice",
    kafka_sasl_password=SECRET,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SASL_PASSWORD_FILE",
        "KAFKA_SSL_CAFILE",
        "MODELMETER_KAFKA_CLIENT",
        "MODELMETER_BOOTSTRAP_TIMEOUT",
        "MODELMETER_UMASK",
        "MODELMETER_METRICS_PORT",
        "MODELMETER_LOG_FORMAT",
        "MODELMETER_HEALTH_MAX_COMMIT_AGE",
    ):
        monkeypatch.delenv(name, raising=False)


def test_password_is_masked_in_repr_str_and_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SASL password never shows in repr, str, model_dump_json or a copy's repr."""
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SECRET)
    settings = Settings()
    copy = settings.with_overrides(topic="other")
    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(copy),
        repr(settings.model_dump()),
        f"{settings}",
    ):
        assert SECRET not in text
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == SECRET


def test_with_overrides_validates_like_the_environment() -> None:
    """A CLI override of the password becomes a SecretStr and an umask string is octal."""
    settings = Settings().with_overrides(kafka_sasl_password=SECRET, umask="077", topic=None)
    assert SECRET not in repr(settings)
    assert settings.umask == 0o077
    assert settings.topic == "agent-usage"
    with pytest.raises(TypeError, match="topik"):
        Settings().with_overrides(topik="typo")


def test_environment_names_of_design_section_2(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Every security setting is read from its documented environment name."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "b1:9093, b2:9093")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "scram-sha-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "alice")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(ca))
    monkeypatch.setenv("MODELMETER_BOOTSTRAP_TIMEOUT", "2.5")
    config = Settings().kafka_client_config()
    assert config == {
        "bootstrap_servers": ["b1:9093", "b2:9093"],
        "security_protocol": "SASL_SSL",
        "bootstrap_timeout_ms": 2500,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": SECRET,
        "ssl_cafile": str(ca),
    }


def test_plaintext_default_config() -> None:
    """Without security settings the client config is plaintext with a 30 s bootstrap timeout."""
    assert Settings().kafka_client_config() == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "PLAINTEXT",
        "bootstrap_timeout_ms": 30_000,
    }


@pytest.mark.parametrize(
    "missing, named",
    [
        ("kafka_sasl_mechanism", "KAFKA_SASL_MECHANISM"),
        ("kafka_sasl_username", "KAFKA_SASL_USERNAME"),
        ("kafka_sasl_password", "KAFKA_SASL_PASSWORD"),
    ],
)
def test_sasl_protocol_needs_mechanism_user_and_password(missing: str, named: str) -> None:
    """SASL without one of its settings is a ConfigError naming the missing variable."""
    values = {**SASL, "kafka_security_protocol": "SASL_PLAINTEXT"}
    values.pop(missing)
    with pytest.raises(ConfigError, match=named) as err:
        Settings(**values).kafka_client_config()
    assert SECRET not in str(err.value)


def test_sasl_settings_with_a_plaintext_protocol_are_refused() -> None:
    """Credentials with PLAINTEXT would silently connect unauthenticated: refused instead."""
    values = {**SASL, "kafka_security_protocol": "PLAINTEXT"}
    with pytest.raises(ConfigError, match="does not use SASL") as err:
        Settings(**values).kafka_client_config()
    assert SECRET not in str(err.value)


def test_ca_file_must_exist_and_needs_a_tls_protocol(tmp_path) -> None:
    """A CA file that does not exist, or one given with a non-TLS protocol, is a ConfigError."""
    with pytest.raises(ConfigError, match="no such file"):
        Settings(
            kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "missing.pem"
        ).kafka_client_config()
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError, match="does not use TLS"):
        Settings(kafka_ssl_cafile=ca).kafka_client_config()
    config = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca).kafka_client_config()
    assert config["ssl_cafile"] == str(ca) and "sasl_mechanism" not in config


def test_invalid_values_are_validation_errors() -> None:
    """Unknown protocol/mechanism, a non-octal umask, a negative timeout are rejected."""
    from pydantic import ValidationError

    for bad in (
        dict(kafka_security_protocol="TLS"),
        dict(kafka_sasl_mechanism="GSSAPI"),
        dict(umask="089"),
        dict(umask="1000"),
        dict(kafka_bootstrap_timeout=0),
        dict(metrics_port=70000),
        dict(log_format="xml"),
    ):
        with pytest.raises(ValidationError):
            Settings(**bad)


def test_umask_from_environment_is_octal(monkeypatch: pytest.MonkeyPatch) -> None:
    """MODELMETER_UMASK=077 means 0o077; the default is 027."""
    assert Settings().umask == 0o027
    monkeypatch.setenv("MODELMETER_UMASK", "077")
    assert Settings().umask == 0o077


def test_apply_umask_makes_new_files_unreadable_to_others(tmp_path) -> None:
    """With the default umask 027 a new file gets no permission bits for others."""
    import os

    previous = Settings().apply_umask()
    try:
        path = tmp_path / "f.parquet"
        path.write_bytes(b"x")
        assert path.stat().st_mode & 0o007 == 0
        assert path.stat().st_mode & 0o020 == 0
    finally:
        os.umask(previous)


def test_operations_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics port, health commit age and log format come from MODELMETER_* variables."""
    assert Settings().metrics_port is None
    monkeypatch.setenv("MODELMETER_METRICS_PORT", "9108")
    monkeypatch.setenv("MODELMETER_HEALTH_MAX_COMMIT_AGE", "60")
    monkeypatch.setenv("MODELMETER_LOG_FORMAT", "JSON")
    s = Settings()
    assert (s.metrics_port, s.health_max_commit_age, s.log_format) == (9108, 60.0, "json")


def test_secret_values_lists_the_password_only() -> None:
    """secret_values() is what log redaction hides: the password, nothing else."""
    assert Settings().secret_values() == []
    assert Settings(**SASL).secret_values() == [SECRET]


def test_the_password_may_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """KAFKA_SASL_PASSWORD_FILE: the file's content (one trailing newline dropped) is the
    password, handed to the client and redacted from logs; never shown by repr."""
    secret_file = tmp_path / "kafka-password"
    secret_file.write_text(SECRET + "\n")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(secret_file))
    values = {k: v for k, v in SASL.items() if k != "kafka_sasl_password"}
    settings = Settings(**values)
    assert settings.kafka_sasl_password is None
    assert settings.kafka_client_config()["sasl_plain_password"] == SECRET
    assert settings.secret_values() == [SECRET]
    assert SECRET not in repr(settings) + str(settings)
    from pipeline.kafka_connect import confluent_config

    assert confluent_config(settings)["sasl.password"] == SECRET


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "cannot read it"),
        (b"", "empty"),
        (b"\n", "empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"x" * (65 * 1024), "larger than 64 KiB"),
    ],
)
def test_a_bad_password_file_is_one_config_error(
    tmp_path, content: bytes | None, problem: str
) -> None:
    """A missing, empty, binary or huge password file: ConfigError naming the variable and
    the file, when a Kafka client is made (report and build never read it)."""
    path = tmp_path / "kafka-password"
    if content is not None:
        path.write_bytes(content)
    values = {k: v for k, v in SASL.items() if k != "kafka_sasl_password"}
    settings = Settings(**values, kafka_sasl_password_file=path)  # made without reading it
    with pytest.raises(ConfigError, match=f"KAFKA_SASL_PASSWORD_FILE {path}: .*{problem}"):
        settings.kafka_client_config()
    assert settings.secret_values() == []


def test_a_password_and_a_password_file_are_refused_together(tmp_path) -> None:
    path = tmp_path / "kafka-password"
    path.write_text("other")
    with pytest.raises(ConfigError, match="both set") as err:
        Settings(**SASL, kafka_sasl_password_file=path).kafka_client_config()
    assert SECRET not in str(err.value)


def test_a_password_file_with_a_plaintext_protocol_is_refused(tmp_path) -> None:
    """As with KAFKA_SASL_PASSWORD: credentials would go unused on a plaintext connection."""
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD_FILE is set but"):
        Settings(kafka_sasl_password_file=tmp_path / "missing").kafka_client_config()


def test_the_password_is_no_command_line_option(capsys: pytest.CaptureFixture[str]) -> None:
    """A command line shows in `ps`: there is no --sasl-password option (argparse refuses it,
    exit 2, without echoing the value), nor one it would abbreviate; --help points at the
    environment variable and the file."""
    from pipeline.cli import main

    for argv in (
        ["policy", "check", "--sasl-password", SECRET],
        ["consume", f"--sasl-password={SECRET}"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "KAFKA_SASL_PASSWORD_FILE" in err
        assert SECRET not in err
    with pytest.raises(SystemExit):
        main(["consume", "--help"])
    out = capsys.readouterr().out
    assert "--sasl-password" not in out
    assert "KAFKA_SASL_PASSWORD" in out and "KAFKA_SASL_PASSWORD_FILE" in out


@pytest.mark.parametrize(
    ("field", "url", "says"),
    [
        ("warehouse", "s3://bucket/lake", "is a URL"),
        ("warehouse", "file:///srv/w.duckdb", "is a URL"),
        ("lake", "gs://bucket/x", "only s3:// URLs"),
        ("lake", "file:///srv/lake", "only s3:// URLs"),
        ("lake", "s3://Bad_Bucket/lake", "not a valid S3 bucket name"),
        ("lake", "s3://bucket/a/../b", "'..'"),
        ("lake", "s3://bucket:9000/lake", "nothing else"),
        ("lake", "s3://MyBucket/lake", "not a valid S3 bucket name"),
    ],
)
def test_a_url_is_never_taken_as_a_relative_path(field, url, says):
    """``s3://b/l`` as a path would be the local directory ``s3:/b/l``: each consumer writing
    its own copy and build reading an empty lake. The lake takes s3:// URLs; anything else
    that looks like a URL is refused, naming the value."""
    with pytest.raises(ValidationError) as err:
        Settings(**{field: url})
    assert says in str(err.value) and url in str(err.value)
    assert Settings(**{field: "data/s3-mirror/lake"}).model_dump()[field] == Path(
        "data/s3-mirror/lake"
    )


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/lake",
        "s3://:wJalrXUtnFEMI@bucket",
        "gs://k:wJalrXUtnFEMI@b",
    ],
)
def test_credentials_in_the_lake_url_are_refused_and_never_echoed(url, capsys):
    with pytest.raises(ValidationError) as err:
        Settings(lake=url)
    assert "holds credentials" in str(err.value.errors()[0]["msg"])
    assert "wJalrXUtnFEMI" not in err.value.errors()[0]["msg"]
    from pipeline.cli import main

    assert main(["build", "--lake", url]) == 2
    assert "wJalrXUtnFEMI" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://bucket/lake", "bucket", "lake"),
        ("s3://my.bucket-1/a/b/", "my.bucket-1", "a/b"),
        ("s3://bucket", "bucket", ""),
    ],
)
def test_an_s3_url_is_the_lake_in_that_bucket(url, bucket, prefix, monkeypatch):
    monkeypatch.setenv("MODELMETER_LAKE", url)
    lake = Settings().lake
    assert isinstance(lake, ObjectLake)
    assert (lake.bucket, lake.prefix) == (bucket, prefix)
    assert str(lake) == url.rstrip("/")
