"""Template source checks that rendering tests would only catch page by page."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = [*ROOT.glob("templates/**/*.html"), *ROOT.glob("deployments/**/templates/**/*.html")]


def test_there_are_templates_to_check():
    assert len(TEMPLATES) > 10


def test_no_template_comment_spans_lines():
    # Django's {# #} is one line only; a longer one is printed on the page as text.
    open_comments = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in TEMPLATES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "{#" in line and "#}" not in line.split("{#", 1)[1]
    ]
    assert not open_comments, open_comments
