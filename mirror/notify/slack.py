"""A Slack-compatible incoming webhook: ``{"text": ..., "blocks": [...]}`` in plain mrkdwn.

The hook's URL is itself the credential (a token in its path), so it is kept out of reprs
and error messages. Text is escaped (``&``, ``<``, ``>``): otherwise a reason from the
upstream could write ``<!channel>`` or a disguised link into the message.
"""

import json
from typing import Any

from yarl import URL

from mirror.notify.channel import Secret, post
from quarantine.messages import Message

SECTION_CHARS = 2900  # Slack refuses a section text over 3000 characters


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    if len(text) > SECTION_CHARS:
        text = text[: SECTION_CHARS - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def slack_payload(message: Message) -> dict[str, Any]:
    details = [escape(line) for line in message.details]
    commands = "\n".join(escape(command) for command in message.commands)
    blocks = [
        _section(f"*{escape(message.title)}* ({escape(message.severity)})"),
        _section("\n".join(details)),
        _section(f"To act:\n```{commands}```"),
        _section(f"id `{escape(message.key)}`"),
    ]
    return {"text": escape(message.title), "blocks": blocks}


class SlackChannel:
    def __init__(self, name: str, url: str | Secret, *, allow_private: bool = False) -> None:
        self._name = name
        self._url = url if isinstance(url, Secret) else Secret(url)
        self._allow_private = allow_private

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"SlackChannel({self._name!r})"

    async def send(self, message: Message) -> None:
        body = json.dumps(slack_payload(message), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "lazaretto-notifier"}
        await post(URL(self._url.reveal()), body, headers, self._allow_private)
