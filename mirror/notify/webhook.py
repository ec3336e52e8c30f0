"""The generic webhook channel: a JSON body signed the Standard Webhooks way.

Headers: ``webhook-id`` (the message's idempotency key, the same on every retry),
``webhook-timestamp`` (unix seconds of this attempt) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">``; during a secret rotation one
signature per secret, space-separated). Receivers should check the signature, refuse
timestamps more than 5 minutes off, and de-duplicate on ``webhook-id``: ``verify`` below is
the reference check.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from yarl import URL

from mirror.notify.channel import Secret, post
from quarantine.clock import format_timestamp
from quarantine.messages import Message

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MIN_SECRET_BYTES = 32
TOLERANCE_SECONDS = 300


def parse_secrets(value: str, where: str) -> tuple[bytes, ...]:
    """Signing keys from a secret setting: ``whsec_<base64>`` or a raw string, several
    separated by spaces while a rotation overlaps. The error names ``where``, never the value.
    """
    keys = []
    for part in value.split():
        if part.startswith(SECRET_PREFIX):
            try:
                key = base64.b64decode(part[len(SECRET_PREFIX) :], validate=True)
            except (binascii.Error, ValueError) as error:
                raise ValueError(
                    f"{where}: a whsec_ secret must be base64 after the prefix"
                ) from error
        else:
            key = part.encode()
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(f"{where}: a webhook secret needs at least {MIN_SECRET_BYTES} bytes")
        keys.append(key)
    if not keys:
        raise ValueError(f"{where}: the webhook secret is empty")
    return tuple(keys)


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def signature(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    content = signed_content(msg_id, timestamp, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        for key in keys
    )


def verify(
    keys: Sequence[bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_SECONDS,
) -> bool:
    """The reference receiver check: a fresh timestamp and a signature by any of ``keys``."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance:
        return False  # a replay, or a clock far off
    expected = signature(keys, msg_id, int(stamp), body).split()
    given = [
        part for part in lowered.get("webhook-signature", "").split() if part.startswith("v1,")
    ]
    return any(hmac.compare_digest(mine, theirs) for mine in expected for theirs in given)


def payload(message: Message) -> dict[str, Any]:
    return {
        "id": message.key,
        "type": f"lazaretto.{message.kind}",
        "timestamp": format_timestamp(message.at),
        "data": {
            "kind": message.kind,
            "severity": message.severity,
            "title": message.title,
            "release": {"project": message.project, "version": message.version},
            "files": [
                {
                    "filename": line.filename,
                    "sha256": line.sha256,
                    "from_state": line.from_state,
                    "to_state": line.to_state,
                    "hold_until": line.hold_until,
                }
                for line in message.files
            ],
            "reasons": list(message.reasons),
            "until": message.until,
            "exposure": message.exposure.to_json() if message.exposure else None,
            "commands": list(message.commands),
            "actors": list(message.actors),
            "event_ids": list(message.event_ids),
            "text": message.text,
        },
    }


class WebhookChannel:
    def __init__(
        self,
        name: str,
        url: str | Secret,
        secret: Secret,
        *,
        allow_private: bool = False,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._name = name
        # The URL of a hosted receiver can carry a token in its path: kept out of reprs.
        self._url = url if isinstance(url, Secret) else Secret(url)
        self._keys = parse_secrets(secret.reveal(), f"notify {name}: secret")
        self._allow_private = allow_private
        self._now = now  # the signature's time is the attempt's, on the real clock

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"WebhookChannel({self._name!r})"

    async def send(self, message: Message) -> None:
        body = json.dumps(payload(message), ensure_ascii=False, separators=(",", ":")).encode()
        stamp = int(self._now())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "lazaretto-notifier",
            "webhook-id": message.key,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature(self._keys, message.key, stamp, body),
        }
        await post(URL(self._url.reveal()), body, headers, self._allow_private)
