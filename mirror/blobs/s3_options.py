"""Where an S3 blob store is and how it serves: plain data, read by the settings without
loading the S3 client."""

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

# A bucket name as S3 allows it (3-63 of lowercase letters, digits, dots and hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# What a URL path keeps unescaped both in a signed S3 URL and through nginx's proxy (which
# escapes a "%" or a space again): a key of only these reaches the store as it was signed.
UNESCAPED = re.compile(r"[A-Za-z0-9._~/-]*")
ServeMode = Literal["stream", "presigned"]
SERVE_MODES: tuple[ServeMode, ...] = ("stream", "presigned")


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "path/inside/bucket" (no slash at either end)

    @classmethod
    def parse(cls, url: str) -> "S3Location":
        """``s3://bucket`` or ``s3://bucket/prefix``; ValueError naming what is wrong."""
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
        if not _BUCKET.fullmatch(parts.netloc):
            raise ValueError(f"{parts.netloc!r} in {url!r} is not an S3 bucket name")
        if parts.query or parts.fragment:
            raise ValueError(f"{url!r} has a query or fragment: give s3://bucket/prefix only")
        return cls(parts.netloc, parts.path.strip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True, slots=True)
class S3Options:
    location: S3Location
    endpoint_url: str | None = None  # None: the provider's own, or AWS_ENDPOINT_URL
    region: str | None = None  # None: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1
    serve: ServeMode = "stream"
    presigned_expiry: timedelta = timedelta(minutes=5)
    # Outage behaviour: a request waits at most about this long before its 503.
    connect_timeout_seconds: float = 5.0
    retry_timeout_seconds: float = 10.0
