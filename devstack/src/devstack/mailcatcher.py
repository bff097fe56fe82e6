"""A real SMTP server that keeps every message, with a small web inbox and a JSON API.

Like Mailpit's and MailHog's test modes, some addresses fail on purpose, so that retries and
bounces can be seen end to end: a recipient whose local part starts with `bounce` is refused
for good (550), one that starts with `defer` is refused for now (451).
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import html
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route


class Mailbox:
    """Messages as `.eml` files in a folder, newest last; survives a restart."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("*.eml"), key=lambda p: int(p.stem))

    def store(self, raw: bytes, envelope_to: list[str]) -> int:
        """Keep a received message; returns its number."""
        files = self._files()
        number = int(files[-1].stem) + 1 if files else 1
        (self.folder / f"{number}.eml").write_bytes(raw)
        (self.folder / f"{number}.rcpt").write_text(json.dumps(envelope_to))
        return number

    def load(self, number: int) -> EmailMessage:
        """Parse a stored message."""
        raw = (self.folder / f"{number}.eml").read_bytes()
        message: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)
        return message

    def summary(self, number: int) -> dict[str, Any]:
        """What the inbox and the API show of a message."""
        message = self.load(number)
        body = message.get_body(preferencelist=("plain", "html"))
        rich = message.get_body(preferencelist=("html",))
        return {
            "id": number,
            "message_id": message["Message-ID"],
            "from": message["From"],
            "to": json.loads((self.folder / f"{number}.rcpt").read_text()),
            "subject": message["Subject"],
            "date": message["Date"],
            "headers": {k: str(v) for k, v in message.items()},
            "text": body.get_content() if body is not None else "",
            "html": rich.get_content() if rich is not None else None,
            "attachments": [
                {
                    "index": i,
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "size": len(part.get_payload(decode=True) or b""),
                }
                for i, part in enumerate(message.iter_attachments())
            ],
        }

    def all(self) -> list[dict[str, Any]]:
        """Every message, oldest first."""
        return [self.summary(int(p.stem)) for p in self._files()]

    def clear(self) -> None:
        """Delete every message."""
        for path in self.folder.iterdir():
            path.unlink()


DATA_LIMIT = 256 << 20  # the largest message accepted


class BlockDataSMTP(SMTP):
    """aiosmtpd with DATA read as one block: its line-by-line loop spends seconds of CPU on a
    70 MB export, where a real mail server spends a fraction of one."""

    async def smtp_DATA(self, arg: str) -> None:
        """Receive the message up to CRLF.CRLF, undo dot-stuffing, hand it to the handler."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        reader: Any = self._reader
        reader._limit = (self.data_size_limit or DATA_LIMIT) + 8  # readuntil's search bound
        try:
            first = await reader.readuntil(b"\r\n")
            rest = b"" if first == b".\r\n" else await reader.readuntil(b"\r\n.\r\n")
        except asyncio.LimitOverrunError:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push("552 Error: Too much mail data")
            if self.transport is not None:
                self.transport.close()  # the rest of the message would be read as commands
            return
        finally:
            reader._limit = self.line_length_limit
        stuffed = b"" if first == b".\r\n" else (first + rest)[:-3]  # drop ".\r\n"
        content = (b"\r\n" + stuffed).replace(b"\r\n.", b"\r\n")[2:]  # RFC 5321 4.5.2
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)


class _Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        local = address.split("@", 1)[0].lower()
        if local.startswith("bounce"):
            return "550 5.1.1 No such mailbox here"
        if local.startswith("defer"):
            return "451 4.2.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        self.mailbox.store(raw, list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


def create_app(mailbox: Mailbox, *, smtp_host: str, smtp_port: int) -> Starlette:
    """The web inbox; its lifespan runs the SMTP server on the same event loop."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        handler = _Handler(mailbox)
        server = await loop.create_server(
            lambda: BlockDataSMTP(
                handler, hostname="quittance-mailcatcher", data_size_limit=DATA_LIMIT
            ),
            host=smtp_host,
            port=smtp_port,
        )
        yield
        server.close()
        await server.wait_closed()

    async def inbox(request: Request) -> HTMLResponse:
        rows = "".join(
            f"<tr><td>{m['id']}</td><td><a href='/messages/{m['id']}'>"
            f"{html.escape(m['subject'] or '')}</a></td><td>{html.escape(', '.join(m['to']))}</td>"
            f"<td>{html.escape(m['date'] or '')}</td>"
            f"<td>{len(m['attachments'])}</td></tr>"
            for m in reversed(mailbox.all())
        )
        return HTMLResponse(
            "<!doctype html><title>Quittance mail</title><h1>Sent mail</h1>"
            "<table border=1 cellpadding=4><tr><th>#</th><th>Subject</th><th>To</th><th>Date</th>"
            f"<th>Attachments</th></tr>{rows}</table>"
        )

    async def message_page(request: Request) -> HTMLResponse:
        m = mailbox.summary(int(request.path_params["number"]))
        headers = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in m["headers"].items()
        )
        files = "".join(
            f"<li><a href='/messages/{m['id']}/attachments/{a['index']}'>"
            f"{html.escape(a['filename'] or 'file')}"
            f"</a> ({a['size']} bytes)</li>"
            for a in m["attachments"]
        )
        rich = (
            # The message's own HTML, in a frame that may run nothing and load nothing remote.
            f"<h2>HTML</h2><iframe src='/messages/{m['id']}/html' sandbox style='width:100%;"
            "height:70vh;border:1px solid #ccc'></iframe>"
            if m["html"] is not None
            else ""
        )
        return HTMLResponse(
            f"<!doctype html><title>{html.escape(m['subject'] or '')}</title><a href='/'>inbox</a>"
            f"<table>{headers}</table>{rich}<h2>Text</h2><pre>{html.escape(m['text'])}</pre>"
            f"<ul>{files}</ul>"
        )

    async def message_html(request: Request) -> Response:
        m = mailbox.summary(int(request.path_params["number"]))
        return HTMLResponse(
            m["html"] or "",
            headers={
                "content-security-policy": "sandbox; default-src 'none'; "
                "style-src 'unsafe-inline'; img-src data: https:"
            },
        )

    async def attachment(request: Request) -> Response:
        message = mailbox.load(int(request.path_params["number"]))
        part = list(message.iter_attachments())[int(request.path_params["index"])]
        return Response(
            part.get_payload(decode=True),
            media_type=part.get_content_type(),
            headers={
                "content-disposition": f"attachment; filename={part.get_filename() or 'file'}"
            },
        )

    async def api_messages(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            mailbox.clear()
            return JSONResponse({"deleted": True})
        return JSONResponse(mailbox.all())

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "time": datetime.now(UTC).isoformat()})

    return Starlette(
        routes=[
            Route("/", inbox),
            Route("/messages/{number:int}", message_page),
            Route("/messages/{number:int}/html", message_html),
            Route("/messages/{number:int}/attachments/{index:int}", attachment),
            Route("/api/messages", api_messages, methods=["GET", "DELETE"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    """Run the mail catcher: `python -m devstack.mailcatcher --smtp-port 2525 --http-port 8025`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=2525)
    parser.add_argument("--http-port", type=int, default=8025)
    parser.add_argument("--store", type=Path, default=Path("var/mail"))
    args = parser.parse_args()
    app = create_app(Mailbox(args.store), smtp_host=args.host, smtp_port=args.smtp_port)
    uvicorn.run(app, host=args.host, port=args.http_port, log_level="warning")


if __name__ == "__main__":
    main()
