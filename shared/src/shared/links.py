"""User-written text as HTML (LINKS): everything escaped; http and https addresses become links
marked nofollow noopener noreferrer; any other scheme (javascript:, data:, file:) stays text.

Every HTML view of user text goes through `user_text_html`, so no template can forget a rule.
"""

from __future__ import annotations

import html
import re

LINK_REL = "nofollow noopener noreferrer"
# An http(s) address up to whitespace or a character that cannot end one in running text.
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}"


def user_text_html(text: str) -> str:
    """The text as safe HTML: escaped, with http(s) addresses as links."""
    parts: list[str] = []
    position = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        end = match.start() + len(url)
        parts.append(html.escape(text[position : match.start()]))
        escaped = html.escape(url, quote=True)
        parts.append(f'<a href="{escaped}" rel="{LINK_REL}" target="_blank">{escaped}</a>')
        position = end
    parts.append(html.escape(text[position:]))
    return "".join(parts).replace("\n", "<br>\n")
