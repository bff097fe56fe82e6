"""A large attachment goes out without holding the message in memory.

The message is composed into a file (the attachment base64-encoded block by block from the
export store's chunks), then handed to the SMTP server line by line from that file, so a
50 MB export costs notifications a few hundred kilobytes of memory, not several copies of it.
"""

from __future__ import annotations

import base64
import hashlib
import smtplib
from collections.abc import Iterable
from email import message_from_bytes, policy
from pathlib import Path
from typing import IO

from notifications.mailer import credentials, tls_context
from notifications.settings import SmtpSettings

_PLACEHOLDER = b"QUITTANCE-ATTACHMENT-PLACEHOLDER"
_BASE64_BLOCK = 57 * 1024  # 57 bytes make one 76-character base64 line
_SEND_BUFFER = 256 * 1024


def compose_with_attachment(
    *, mime: bytes, filename: str, pieces: Iterable[bytes], out: IO[bytes]
) -> str:
    """Write `mime` (a text message) with the pieces attached as one file; return its SHA-256."""
    message = message_from_bytes(mime, policy=policy.SMTP)
    message.add_attachment(_PLACEHOLDER, maintype="application", subtype="zip", filename=filename)
    rendered = message.as_bytes(policy=policy.SMTP)
    marker = base64.encodebytes(_PLACEHOLDER).replace(b"\n", b"\r\n")
    prefix, suffix = rendered.split(marker, 1)
    out.write(prefix)
    digest = hashlib.sha256()
    carry = b""
    for piece in pieces:
        digest.update(piece)
        carry += piece
        whole = len(carry) - len(carry) % _BASE64_BLOCK
        if whole:
            out.write(base64.encodebytes(carry[:whole]).replace(b"\n", b"\r\n"))
            carry = carry[whole:]
    if carry:
        out.write(base64.encodebytes(carry).replace(b"\n", b"\r\n"))
    out.write(suffix)
    return digest.hexdigest()


def send_file(settings: SmtpSettings, *, sender: str, recipient: str, path: Path) -> None:
    """Send a composed message from a file over SMTP, streaming DATA (blocking: run in a thread).

    TLS as `SmtpMailer.send` has it (TLS clause): the same verifying context, and no login over
    plaintext (`SmtpConfigurationError`, raised before connecting).
    """
    login = credentials(settings)
    smtp: smtplib.SMTP
    if settings.use_tls:
        smtp = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout_s, context=tls_context(settings)
        )
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
    with smtp:
        smtp.ehlo()
        if settings.start_tls:
            smtp.starttls(context=tls_context(settings))
            smtp.ehlo()
        if login is not None:
            smtp.login(*login)
        code, reply = smtp.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        code, reply = smtp.docmd("DATA")
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        at_line_start = True
        with path.open("rb") as message:
            while block := message.read(_SEND_BUFFER):
                # RFC 5321 dot-stuffing, a block at a time (a line-by-line loop costs seconds
                # on a 70 MB message): a line that starts with "." gets another one.
                if at_line_start and block.startswith(b"."):
                    block = b"." + block
                smtp.send(block.replace(b"\n.", b"\n.."))
                at_line_start = block.endswith(b"\n")
        smtp.send(b".\r\n" if at_line_start else b"\r\n.\r\n")
        code, reply = smtp.getreply()
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
