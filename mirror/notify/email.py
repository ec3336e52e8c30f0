"""Email over SMTP: STARTTLS by default, credentials from the environment, plain text.

smtplib blocks, so each send runs in a worker thread. The server's name is resolved and
checked by the target policy first, and the connection goes to a checked address while
TLS still verifies the certificate against the configured name. ``email.message`` refuses
CR and LF in headers, and the subject holds only normalized names, so nothing from the
upstream can add a header. The password is a ``Secret``: never in a log, a repr or an
error (smtplib's debug output, which would show it, stays off).
"""

import asyncio
import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime

from mirror.notify.channel import DeliveryFailed, Secret, checked_addresses
from quarantine.messages import Message, clean

TIMEOUT = 10.0


class _PinnedSMTP(smtplib.SMTP):
    """Connects to ``address`` while the name stays ``host`` (for STARTTLS verification)."""

    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        self._address = address
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self._address, port), timeout, self.source_address)


def build_email(message: Message, sender: str, recipients: Sequence[str]) -> EmailMessage:
    email = EmailMessage()
    email["Subject"] = clean(f"[Lazaretto {message.severity}] {message.title}", 200)
    email["From"] = sender
    email["To"] = ", ".join(recipients)
    email["Date"] = format_datetime(message.at)
    domain = sender.rpartition("@")[2] or "lazaretto.invalid"
    # A stable Message-ID: a retried mail is recognisably the same one.
    email["Message-ID"] = f"<{message.key}@{domain}>"
    email["X-Lazaretto-Id"] = message.key
    body = message.text + f"\n\nId: {message.key} (the same on every retry)\n"
    # Plain ASCII stays readable (and the commands copyable) even in a raw view: 7bit,
    # not quoted-printable, whenever the lines allow it (RFC 5322: at most 998 characters).
    readable = body.isascii() and max(len(line) for line in body.splitlines()) <= 998
    email.set_content(body, subtype="plain", cte="7bit" if readable else None)
    return email


class EmailChannel:
    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        *,
        starttls: bool = True,
        username: str | None = None,
        password: Secret | None = None,
        allow_private: bool = False,
    ) -> None:
        if username and not starttls and not allow_private:
            # A password in the clear to a public server: never.
            raise ValueError(f"notify {name}: a login needs starttls = true")
        self._name = name
        self._host, self._port = host, port
        self._sender, self._recipients = sender, tuple(recipients)
        self._starttls = starttls
        self._username, self._password = username, password
        self._allow_private = allow_private

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"EmailChannel({self._name!r})"

    async def send(self, message: Message) -> None:
        addresses = await checked_addresses(self._host, self._port, self._allow_private)
        email = build_email(message, self._sender, self._recipients)
        await asyncio.to_thread(self._deliver, addresses[0][1], email)

    def _deliver(self, address: str, email: EmailMessage) -> None:
        try:
            self._session(address, email)
        except smtplib.SMTPNotSupportedError as error:
            raise DeliveryFailed(f"{self._host}: the server does not offer STARTTLS") from error
        except smtplib.SMTPRecipientsRefused as error:
            refused = ", ".join(sorted(error.recipients))
            raise DeliveryFailed(f"{self._host}: recipients refused: {refused}") from error
        except smtplib.SMTPResponseException as error:
            raise DeliveryFailed(_response_reason(self._host, error)) from error
        except ssl.SSLError as error:
            raise DeliveryFailed(f"{self._host}: TLS failed ({error.reason})") from error
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryFailed(f"{self._host}:{self._port}: {type(error).__name__}") from error

    def _session(self, address: str, email: EmailMessage) -> None:
        smtp = _PinnedSMTP(address, self._host, self._port, TIMEOUT)
        try:
            smtp.ehlo()
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self._username:
                smtp.login(self._username, self._password.reveal() if self._password else "")
            smtp.send_message(email)
        finally:
            _quit(smtp)


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye, ignoring a rude answer: the mail was accepted (or the error is raised)."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _response_reason(host: str, error: smtplib.SMTPResponseException) -> str:
    # The server's own words, cleaned; they never include what we sent in AUTH.
    raw = error.smtp_error
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return clean(f"{host}: SMTP {error.smtp_code} {text}", 300)
