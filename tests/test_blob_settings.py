"""The blob store keys: an S3 bucket or the disk, how files are served, and refusals that
name the key in one line (and never take a credential from the config file)."""

from datetime import timedelta
from pathlib import Path

import pytest

from mirror.blobs.s3_options import S3Location
from mirror.errors import ConfigError
from mirror.settings import Settings, load_settings


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "lazaretto.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env or {}, {})


def _refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_blobs_stay_on_disk_by_default(tmp_path: Path) -> None:
    settings = _load(tmp_path, "")
    assert settings.blob_s3 is None
    assert _load(tmp_path, 'blob_store = "disk"\n').blob_s3 is None


def test_an_s3_store_with_its_endpoint_region_and_presigned_serving(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        'blob_store = "s3://wheels.internal/mirror/blobs/"\n'
        'blob_endpoint_url = "http://127.0.0.1:8333"\n'
        'blob_region = "eu-west-1"\n'
        'blob_serve = "presigned"\n'
        'blob_presigned_expiry = "2m"\n',
    )
    options = settings.blob_s3
    assert options is not None
    assert options.location == S3Location("wheels.internal", "mirror/blobs")
    assert (options.endpoint_url, options.region) == ("http://127.0.0.1:8333", "eu-west-1")
    assert options.serve == "presigned" and options.presigned_expiry == timedelta(minutes=2)


def test_the_store_can_come_from_the_environment(tmp_path: Path) -> None:
    settings = _load(tmp_path, "", {"LAZARETTO_BLOB_STORE": "s3://bucket"})
    assert settings.blob_s3 is not None and settings.blob_s3.location == S3Location("bucket", "")
    assert settings.blob_s3.serve == "stream"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('blob_store = "https://bucket/prefix"', "blob_store"),
        ('blob_store = "s3://Not_A_Bucket/x"', "blob_store"),
        ('blob_store = "s3://bucket/x?versionId=1"', "blob_store"),
        ('blob_store = "s3://bucket"\nblob_endpoint_url = "ftp://host"', "blob_endpoint_url"),
        ('blob_store = "s3://bucket"\nblob_serve = "proxy"', "blob_serve"),
        ('blob_serve = "presigned"', "blob_serve"),
        ('blob_endpoint_url = "http://127.0.0.1:9000"', "blob_endpoint_url"),
    ],
)
def test_a_bad_blob_key_is_named_in_one_line(tmp_path: Path, text: str, named: str) -> None:
    assert named in _refusal(tmp_path, text + "\n")


@pytest.mark.parametrize("key", ["blob_secret_access_key", "aws_access_key_id", "s3_password"])
def test_credentials_in_the_config_file_are_refused_with_where_they_belong(
    tmp_path: Path, key: str
) -> None:
    message = _refusal(tmp_path, f'{key} = "hunter2"\n')
    assert "AWS_SECRET_ACCESS_KEY" in message and "hunter2" not in message


def test_accel_redirect_with_an_s3_store_sends_through_nginx(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        'blob_store = "s3://wheels/mirror-1.blobs_v2/x~y"\naccel_redirect = "/_lazaretto_s3/"\n',
    )
    assert settings.accel_redirect == "/_lazaretto_s3/"
    assert settings.blob_s3 is not None and settings.blob_s3.serve == "stream"


def test_accel_redirect_refuses_presigned_serving_beside_it(tmp_path: Path) -> None:
    message = _refusal(
        tmp_path,
        'blob_store = "s3://wheels"\nblob_serve = "presigned"\n'
        'accel_redirect = "/_lazaretto_s3/"\n',
    )
    assert "accel_redirect" in message and "presigned" in message


@pytest.mark.parametrize("prefix", ["with space", "a%2Fb", "plus+sign", "caf\u00e9"])
def test_accel_redirect_refuses_a_prefix_nginx_would_escape_again(
    tmp_path: Path, prefix: str
) -> None:
    """nginx escapes such a key again before proxying it: the store would see another
    key than the one signed (a 403 on every file), so the mirror refuses to start."""
    message = _refusal(
        tmp_path, f'blob_store = "s3://wheels/{prefix}"\naccel_redirect = "/_lazaretto_s3/"\n'
    )
    assert "blob_store" in message and "letters, digits" in message
    _load(tmp_path, f'blob_store = "s3://wheels/{prefix}"\n')  # streamed: any prefix works
