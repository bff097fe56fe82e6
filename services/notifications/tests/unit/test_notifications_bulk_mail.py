"""A large attachment is composed block by block into a file that any mail reader parses."""

from __future__ import annotations

import hashlib
import io
import os
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from notifications.bulk_mail import compose_with_attachment


def _text_message() -> bytes:
    message = EmailMessage()
    message["From"] = "Quittance <no-reply@quittance.example>"
    message["To"] = "ada@acme.example.com"
    message["Subject"] = "Your Quittance data export"
    message.set_content("Hello,\n\nThe record of all your information is attached.\n")
    return bytes(message)


@pytest.mark.clause("TERMINATION")
def test_termination_the_export_is_attached_whole_whatever_its_pieces() -> None:
    """Pieces of any size, not aligned on base64 lines, come out as one exact attachment."""
    content = os.urandom(57 * 1024 * 3 + 1234)
    pieces = [content[:1000], content[1000:200_000], content[200_000:]]
    out = io.BytesIO()
    sha256 = compose_with_attachment(
        mime=_text_message(), filename="quittance-export.zip", pieces=pieces, out=out
    )
    assert sha256 == hashlib.sha256(content).hexdigest()
    raw = out.getvalue()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")), "SMTP line length"
    parsed = message_from_bytes(raw, policy=policy.default)
    [attachment] = list(parsed.iter_attachments())  # type: ignore[attr-defined]
    assert attachment.get_filename() == "quittance-export.zip"
    assert attachment.get_content() == content
    assert "attached" in parsed.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    assert parsed["Subject"] == "Your Quittance data export"
