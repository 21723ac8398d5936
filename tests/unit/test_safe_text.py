"""pipeline/safe_text.py: the one rule for showing a string that came from outside.

:data:`HOSTILE` is the catalogue of values the report, dq and log tests put into roles,
providers, models and triggers: terminal escapes, control characters, line breaks, bidi
and zero-width characters, rich markup, HTML and markdown.
"""

from __future__ import annotations

import html
import re
import string

import pytest

from pipeline.safe_text import html_text, markdown_text, visible

#: Distinct values, each dangerous somewhere; every one is still distinct once visible.
HOSTILE = (
    "\x1b[31mred\x1b[0m",                      # ANSI colour (ESC)
    "bell\x07",                                # BEL
    "nul\x00byte",                             # NUL
    "del\x7f",                                 # DEL
    "cr\rover",                                # CR: rewrites the line / a fake markdown row
    "lf\nrow",                                 # LF: an extra line / row
    "rtl\u202eevil",                           # RIGHT-TO-LEFT OVERRIDE
    "archi\u200btect",                         # ZERO WIDTH SPACE: looks like "architect"
    "ls\u2028sep",                             # LINE SEPARATOR
    "[/]",                                     # rich: closing tag with nothing to close
    "[/bold]",
    "arch[i]itect",                            # rich: italic markup, eats "[i]"
    "[bold red]glm-4.5[/]",                    # rich: shows as "glm-4.5"
    "<img src=x onerror=alert(1)>",            # HTML
    "<script>alert(1)</script>",
    "![t](https://example.invalid/x.png)",     # markdown image (a remote fetch)
    "a|b",                                     # markdown table cell
    "&amp;",                                   # an entity: must show as typed
)

#: Characters that must never reach an output raw (the non-printable ones of HOSTILE).
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def only_printable(text: str) -> bool:
    """Every character printable, line breaks (LF) aside."""
    return all(c.isprintable() or c == "\n" for c in text)


def test_the_catalogue_is_distinct_and_stays_distinct_in_every_escape():
    assert len(set(HOSTILE)) == len(HOSTILE)
    for escape in (visible, html_text, markdown_text):
        assert len({escape(v) for v in HOSTILE}) == len(HOSTILE), escape.__name__


@pytest.mark.parametrize("value", HOSTILE)
def test_visible_is_one_printable_line_and_idempotent(value):
    shown = visible(value)
    assert shown.isprintable() and not RAW.search(shown)
    assert visible(shown) == shown
    if value.isprintable():
        assert shown == value                  # printable values are shown as they are


def test_visible_writes_the_escapes_repr_would():
    assert visible("a\x1b[31mb") == "a\\x1b[31mb"
    assert visible("rtl\u202eevil") == "rtl\\u202eevil"
    assert visible("cr\r\nlf") == "cr\\x0d\\x0alf"
    assert visible("tag\U000e0001") == "tag\\U000e0001"
    assert visible(None) == "None"


@pytest.mark.parametrize("value", HOSTILE)
def test_html_text_leaves_no_markup_and_decodes_to_the_visible_value(value):
    shown = html_text(value)
    assert not re.search("[<>\"']", shown) and not RAW.search(shown)
    assert not re.search(r"&(?!amp;|lt;|gt;|quot;|#x27;)", shown)
    assert html.unescape(shown) == visible(value)


@pytest.mark.parametrize("value", HOSTILE)
def test_markdown_text_escapes_every_ascii_punctuation(value):
    shown = markdown_text(value)
    assert not RAW.search(shown)
    unescaped = re.sub(r"\\(.)", "", shown)    # drop every escape pair: nothing special is left
    assert not any(c in string.punctuation for c in unescaped)
    assert re.sub(r"\\(.)", r"\1", shown) == visible(value)
