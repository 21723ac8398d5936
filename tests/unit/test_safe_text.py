"""pipeline/safe_text.py: the one rule for showing a string that came from outside.

``HOSTILE`` (tests/fixtures/hostile_text.py) is the catalogue of values the report, dq and
log tests put into roles, providers, models and triggers: terminal escapes, control
characters, line breaks, bidi and zero-width characters, rich markup, HTML and markdown.
"""

from __future__ import annotations

import html
import re
import string

import pytest

from pipeline.safe_text import html_text, markdown_text, visible
from tests.fixtures.hostile_text import HOSTILE, RAW


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
        assert shown == value  # printable values are shown as they are


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
    unescaped = re.sub(r"\\(.)", "", shown)  # drop every escape pair: nothing special is left
    assert not any(c in string.punctuation for c in unescaped)
    assert re.sub(r"\\(.)", r"\1", shown) == visible(value)
