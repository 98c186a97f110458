"""Masking holds for what build tools actually print: a table of spellings of a secret,
each written through the real LogWriter, checked in the stored log (the download and the
page's history read it), the live Redis stream, and the SSE text a viewer gets."""

from __future__ import annotations

import base64
import html
import json
import re
import shlex
from urllib.parse import quote, quote_plus

import pytest

from deployments.logs import LogWriter, Masker, get_redis, stream_key
from deployments.models import LogLine
from tests.conftest import log_deployment

SECRET = "Zq7'-s3cr3t/p@ss+wörd&more=="
RAW = SECRET.encode()
B64 = base64.b64encode(RAW).decode()
LONG = "k" * 40 + SECRET + "K" * 60  # a long token: its encodings wrap over lines


def embedded(encode, prefix: bytes, suffix: bytes = b"!tail") -> str:
    return encode(prefix + RAW + suffix).decode()


def wrapped(text: str, width: int) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


# (name, printed text, a fragment that must never survive)
SPELLINGS = [
    ("raw", f"token={SECRET}", "s3cr3t"),
    ("url-encoded", f"GET /login?p={quote(SECRET, safe='')}", quote(SECRET, safe="")[4:20]),
    ("url-encoded, lower-case escapes", re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), quote(SECRET, safe="")),
     "s3cr3t%2fp%40"),
    ("form-encoded", f"body: p={quote_plus(SECRET)}", quote_plus(SECRET)[4:18]),
    ("JSON", json.dumps({"password": SECRET}), "s3cr3t"),
    ("JSON, ASCII only", json.dumps({"p": SECRET}, ensure_ascii=True), "s3cr3t"),
    ("JSON with escaped slashes", json.dumps(SECRET).replace("/", "\\/"), "s3cr3t"),
    ("set -x (single-quoted)", "+ curl -u 'admin:" + SECRET.replace("'", "'\\''") + "' https://x", "s3cr3t"),
    ("shlex / printf %q", f"+ deploy --token {shlex.quote(SECRET)}", "s3cr3t"),
    ("HTML-escaped", f"<td>{html.escape(SECRET)}</td>", "s3cr3t"),
    ("hex", RAW.hex(), RAW.hex()[6:30]),
    ("HEX", RAW.hex().upper(), RAW.hex().upper()[6:30]),
    ("base64", f"Authorization: Basic {B64}", B64[4:20]),
    ("base64 without padding", B64.rstrip("="), B64[4:20]),
    ("base64url", base64.urlsafe_b64encode(RAW).decode(), base64.urlsafe_b64encode(RAW).decode()[4:20]),
    ("base32", base64.b32encode(RAW).decode(), base64.b32encode(RAW).decode()[4:24]),
    ("base64 of user:secret", base64.b64encode(b"admin:" + RAW).decode(), embedded(base64.b64encode, b"admin:")[10:24]),
    ("base64 at offset 1", embedded(base64.b64encode, b"x"), embedded(base64.b64encode, b"x")[4:20]),
    ("base64 at offset 2", embedded(base64.b64encode, b"xy"), embedded(base64.b64encode, b"xy")[4:20]),
    ("base64 in a config blob", embedded(base64.b64encode, b'{"auths":{"r":{"auth":"', b'"}}}'),
     embedded(base64.b64encode, b'{"auths":{"r":{"auth":"', b'"}}}')[36:52]),
    ("base32 at offset 3", embedded(base64.b32encode, b"abc"), embedded(base64.b32encode, b"abc")[8:28]),
    ("colour codes inside", f"pass=\x1b[1;31m{SECRET[:7]}\x1b[0m{SECRET[7:]}", "cr3t/p@ss"),
    ("cursor movement inside", f"{SECRET[:6]}\x1b[2K\x1b[1G{SECRET[6:]}", "cr3t/p"),
    ("split over two lines", f"token: {SECRET[:10]}\n{SECRET[10:]} end", "t/p@ss+w"),
]  # fmt: skip
WRAPPED = [
    ("base64 wrapped at 76", wrapped(base64.b64encode(LONG.encode()).decode(), 76)),
    ("base64 wrapped at 64 (PEM)", wrapped(base64.b64encode(LONG.encode()).decode(), 64)),
]


@pytest.fixture
def deployment(transactional_db):
    yield from log_deployment("mask")


def written(deployment, text: str, secrets: list[str]) -> tuple[str, str]:
    """(what the database holds, what the live stream holds) after writing `text`."""
    writer = LogWriter(deployment.pk, secrets=secrets)
    for line in text.split("\n"):
        writer.line(line)
    writer.close()
    db = "\n".join(
        LogLine.objects.filter(deployment=deployment)
        .order_by("entry_ms", "entry_seq")
        .values_list("text", flat=True)
    )
    live = "\n".join(
        f["text"] for _, f in get_redis().xrange(stream_key(deployment.pk)) if f.get("type") == "line"
    )
    return db, live


@pytest.mark.parametrize(("name", "text", "fragment"), SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_each_spelling_is_masked_in_the_stored_log_and_the_live_stream(deployment, name, text, fragment):
    assert fragment in text  # the table itself is right: the fragment is there unmasked
    db, live = written(deployment, text, [SECRET])
    for where in (db, live):
        assert fragment not in where, f"{name}: {where!r}"
        assert "****" in where


@pytest.mark.parametrize(("name", "text"), WRAPPED, ids=[w[0] for w in WRAPPED])
def test_a_long_secrets_encoding_wrapped_over_lines_is_masked_on_every_line(deployment, name, text):
    db, live = written(deployment, text, [LONG])
    for where in (db, live):
        for original, stored in zip(text.split("\n"), where.split("\n"), strict=True):
            if len(original) >= 8:
                assert original not in stored, f"{name}: {stored!r}"


def test_masking_leaves_ordinary_output_alone():
    masker = Masker([SECRET])
    ordinary = [
        "Step 3/7 : RUN make",
        base64.b64encode(b"some unrelated bytes, quite long, nothing secret").decode(),
        "deadbeef" * 8,
        "GET /healthz 200",
    ]
    assert [masker(line) for line in ordinary] == ordinary
