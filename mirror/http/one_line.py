"""The one-line plain-text answer every refusal and health check gets.

Shared by the app's exception handlers and the fast path, so a refusal reads the same
whichever door the request came through.
"""

from dataclasses import dataclass

from mirror.errors import MirrorError

MAX_REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class OneLine:
    status: int
    headers: dict[str, str]
    body: bytes


def one_line(status: int, reason: str, extra: dict[str, str] | None = None) -> OneLine:
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **(extra or {})}
    text = reason.splitlines()[0][:MAX_REASON_CHARS] + "\n" if reason else "\n"
    return OneLine(status, headers, text.encode())


def for_error(error: MirrorError) -> OneLine:
    extra = {"Retry-After": "30"} if error.status in (503, 504) else None
    return one_line(error.status, error.reason, extra)
