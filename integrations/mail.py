"""Outgoing mail: SMTP in production, an .eml outbox under var/mail/ for local use."""

from __future__ import annotations

import smtplib
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol

from core.settings import Settings


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


def compose(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="quantpoly.local")
    message.set_content(body)
    return message


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def send(self, message: EmailMessage) -> None:
        s = self._settings
        smtp_class = smtplib.SMTP_SSL if s.smtp_ssl else smtplib.SMTP
        with smtp_class(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds) as smtp:
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_username and s.smtp_password:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
            smtp.send_message(message)


@dataclass(frozen=True)
class StoredMail:
    id: str
    date: str
    to: str
    subject: str
    body: str


class FileOutbox:
    """Each message is one ``<time>-<id>.eml`` file; names sort by time of sending."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        final = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        partial = final.with_suffix(".part")
        partial.write_bytes(message.as_bytes(policy=policy.SMTP))
        partial.rename(final)  # readers never see half a message

    def list(self) -> list[StoredMail]:
        if not self.directory.exists():
            return []
        return [self._read(path) for path in sorted(self.directory.glob("*.eml"))]

    def get(self, mail_id: str) -> StoredMail | None:
        path = self.directory / f"{mail_id}.eml"
        if "/" in mail_id or not path.is_file():
            return None
        return self._read(path)

    @staticmethod
    def _read(path: Path) -> StoredMail:
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        body = message.get_body(preferencelist=("plain",))
        return StoredMail(
            id=path.stem,
            date=str(message["Date"]),
            to=str(message["To"]),
            subject=str(message["Subject"]),
            body=body.get_content() if body else "",
        )


def mailer_from_settings(settings: Settings) -> Mailer:
    if settings.mail_backend == "smtp":
        return SmtpMailer(settings)
    return FileOutbox(settings.mail_dir)
