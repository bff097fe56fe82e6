"""LINKS: user text shown as HTML is escaped; only http and https become links, and those are
marked nofollow noopener noreferrer."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.links import LINK_REL, user_text_html

pytestmark = pytest.mark.clause("LINKS")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parsed(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(user_text_html(text))
    return parser


@pytest.mark.clause("LINKS")
def test_links_an_http_and_an_https_address_and_marks_them() -> None:
    parsed = _parsed("See https://example.com/a?b=1&c=2, or http://x.example/ (both).")
    links = [attrs for tag, attrs in parsed.tags if tag == "a"]
    assert [a["href"] for a in links] == ["https://example.com/a?b=1&c=2", "http://x.example/"]
    assert all(a["rel"] == LINK_REL for a in links)
    assert "".join(parsed.text).startswith("See https://example.com/a?b=1&c=2, or")


def test_other_schemes_and_markup_stay_text() -> None:
    hostile = (
        "<script>alert(1)</script> javascript:alert(1) data:text/html,<b>x</b> "
        "<a href='javascript:alert(2)'>click</a> file:///etc/passwd"
    )
    parsed = _parsed(hostile)
    assert parsed.tags == []
    assert "".join(parsed.text) == hostile


def test_an_address_cannot_break_out_of_its_attribute() -> None:
    parsed = _parsed('https://evil.example/"onmouseover="alert(1)')
    ((tag, attrs),) = parsed.tags
    assert tag == "a"
    assert set(attrs) == {"href", "rel", "target"}
    assert attrs["href"] == "https://evil.example/"


@given(st.text())
def test_any_text_reads_back_the_same_and_holds_no_other_tag(text: str) -> None:
    parsed = _parsed(text)
    assert {tag for tag, _ in parsed.tags} <= {"a", "br"}
    assert all(a["rel"] == LINK_REL for tag, a in parsed.tags if tag == "a")
    assert all(
        (a["href"] or "").lower().startswith(("http://", "https://"))
        for tag, a in parsed.tags
        if tag == "a"
    )
