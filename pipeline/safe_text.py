"""How a string that came from outside (an event, a routing policy, a price book, a Kafka
message) is shown: one rule for every output.

Such a string may hold anything: terminal escape sequences (ESC, BEL), NUL, carriage
returns that rewrite a line, bidi overrides (U+202E) that reverse what follows, zero-width
characters that make two different values look the same, markup (``[bold]``, ``<img>``,
``![t](https://...)``). Every output shows it as data, never as instructions:

* :func:`visible` is the rule itself: every character that is not printable (Python's
  ``str.isprintable``: control, format - bidi, zero-width -, line and paragraph separators,
  non-ASCII spaces, private-use, surrogates and unassigned code points) is replaced by the
  escape Python's ``repr`` would write (``\\x1b``, ``\\u202e``, ``\\U000e0001``). The result is
  one printable line. Applied to a value that is already printable it returns the value.
* each format then makes its own syntax inert: :func:`html_text` (HTML and SVG text and
  attributes), :func:`markdown_text` (every ASCII punctuation character backslash-escaped,
  so no emphasis, link, image, table cell or raw HTML); the text report hands values to rich
  as plain :class:`rich.text.Text`, never as markup; JSON is written with ``ensure_ascii``.

The event contract also refuses non-printable characters in identifiers (role, agent,
task, provider, model, trigger: docs/events.md), so the rule matters for data landed
before that, for policies and price books, and for the raw Kafka messages the dead-letter
path describes.
"""

from __future__ import annotations

import html
import re

__all__ = ["visible", "html_text", "markdown_text"]

_MARKDOWN_PUNCTUATION = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: object) -> str:
    """``text`` with every non-printable character as a visible escape (``\\x1b``)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def html_text(text: object) -> str:
    """:func:`visible`, then HTML-escaped (``<``, ``>``, ``&``, both quotes): for element text
    and attribute values of HTML and SVG."""
    return html.escape(visible(text), quote=True)


def markdown_text(text: object) -> str:
    """:func:`visible`, then every ASCII punctuation character backslash-escaped (CommonMark
    treats each as a literal): no emphasis, code, link, image, table cell, heading or raw
    HTML can come out of the value."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", visible(text))
