"""Masking secrets in log text, and making text every store accepts."""

from __future__ import annotations

import base64
import html
import json
import re
import shlex
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

MASK = "****"
MIN_SECRET_LENGTH = 4


# --- masking -------------------------------------------------------------------

# Terminal control sequences (CSI such as colours, OSC such as titles, two-byte ESC
# sequences) and other C0 controls except tab and newline. A build that colours its
# output must not be able to hide a secret from the masker by interleaving them.
_CONTROLS = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|[\x00-\x08\x0b-\x1f\x7f]"
)
_HAS_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_PERCENT = re.compile("%[0-9A-F]{2}")
Span = tuple[int, int]


# Encodings build tools print a value in. Base64 (both alphabets) and base32 are also
# matched inside a larger blob of the same encoding (see _embedded), and wrapped at the
# widths `base64` (76) and PEM (64) use.
_WRAP_WIDTHS = (76, 64)
_MIN_EMBEDDED = 8  # shorter stable cores would mask unrelated text


def _forms(secret: str) -> set[str]:
    """The spellings of `secret` that commonly end up in logs: as is; URL-encoded (upper
    and lower case escapes); JSON-, shell- and HTML-escaped; hex; base64, base64url and
    base32, alone, embedded at any byte offset in a larger blob, and wrapped over lines."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    forms |= {_PERCENT.sub(lambda m: m.group(0).lower(), f) for f in list(forms)}
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    forms.add(json.dumps(secret)[1:-1].replace("/", "\\/"))  # PHP and some JSON writers
    forms.add(secret.replace("'", "'\\''"))  # inside '…' as `set -x` and %q print it
    forms.add(shlex.quote(secret))
    forms.add(html.escape(secret))
    forms |= {raw.hex(), raw.hex().upper()}
    for encode, group in ((base64.b64encode, 3), (base64.urlsafe_b64encode, 3), (base64.b32encode, 5)):
        encoded = encode(raw).decode()
        forms.update((encoded, encoded.rstrip("=")))
        forms |= _embedded(raw, encode, group)
        for width in _WRAP_WIDTHS:
            if len(encoded) > width:
                forms |= {encoded[i : i + width] for i in range(0, len(encoded), width)}
    return forms


def _embedded(raw: bytes, encode: Callable[[bytes], bytes], group: int) -> set[str]:
    """What stays the same in the encoding of `raw` wherever it sits in a larger input:
    for each offset into the encoder's byte group, the characters that depend on `raw`
    alone (the neighbours' bits change the first and last ones)."""
    bits = 6 if group == 3 else 5
    cores = set()
    for offset in range(group):
        encoded = encode(b"\0" * offset + raw + b"\0" * group).decode()
        start = -(-offset * 8 // bits)  # first character with no bit of the prefix
        end = (offset + len(raw)) * 8 // bits  # last character with no bit of the suffix
        core = encoded[start:end]
        if len(core) >= _MIN_EMBEDDED:
            cores.add(core)
    return cores


def _stripped(text: str) -> tuple[str, list[int] | None]:
    """`text` without control sequences, and for each kept character its index in `text`
    (None when nothing was stripped)."""
    if not _HAS_CONTROL.search(text):
        return text, None
    parts: list[str] = []
    index: list[int] = []
    last = 0
    for match in _CONTROLS.finditer(text):
        parts.append(text[last : match.start()])
        index.extend(range(last, match.start()))
        last = match.end()
    parts.append(text[last:])
    index.extend(range(last, len(text)))
    return "".join(parts), index


def _replace(text: str, spans: list[Span]) -> str:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[str] = []
    pos = 0
    for start, end in merged:
        out += (text[pos:start], MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


class Masker:
    """Replaces secrets and their encoded forms with `****`, using one compiled regex.

    Matching ignores terminal control sequences, so `s3c\x1b[1mret` is caught; a
    match swallows the sequences inside it.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < MIN_SECRET_LENGTH:
                continue
            forms |= _forms(secret)
            # Builds print multi-line secrets (keys, certificates) one line at a time.
            if "\n" in secret:
                for part in secret.splitlines():
                    if len(part.strip()) >= 8:
                        forms |= _forms(part.strip())
        forms = {f for f in forms if len(f) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret that contains another one is masked whole.
        ordered = sorted(forms, key=lambda f: (-len(f), f))
        self._regex = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._reach = max(map(len, ordered), default=0)
        self._joins = ("", "\n") if any("\n" in f for f in ordered) else ("",)

    @property
    def active(self) -> bool:
        return self._regex is not None

    def __call__(self, text: str) -> str:
        if self._regex is None:
            return text
        stripped, index = _stripped(text)
        if index is None:
            return self._regex.sub(MASK, text)
        spans = [m.span() for m in self._regex.finditer(text)]
        spans += [(index[m.start()], index[m.end() - 1] + 1) for m in self._regex.finditer(stripped)]
        return _replace(text, spans) if spans else text

    def across(self, before: str, after: str) -> tuple[int, int] | None:
        """A secret that starts in line `before` and ends in line `after` (printed
        wrapped, or split over two writes): `(cut, upto)` such that
        `before[cut:]` and `after[:upto]` are its two halves, or None."""
        if self._regex is None or not before or not after:
            return None
        head, head_index = _stripped(before)
        tail, tail_index = _stripped(after)
        a, b = head[-(self._reach - 1) :], tail[: self._reach - 1]
        found: tuple[int, int] | None = None
        for join in self._joins:
            for match in self._regex.finditer(a + join + b):
                if match.start() < len(a) and match.end() > len(a) + len(join):
                    cut = len(head) - len(a) + match.start()
                    upto = match.end() - len(a) - len(join)
                    found = (
                        min(cut, found[0]) if found else cut,
                        max(upto, found[1]) if found else upto,
                    )
        if found is None:
            return None
        cut, upto = found
        if head_index is not None:
            cut = head_index[cut]
        if tail_index is not None:
            upto = tail_index[upto - 1] + 1
        return cut, upto


def mask(text: str, secrets: Iterable[str]) -> str:
    return Masker(secrets)(text)


# --- what may be stored ------------------------------------------------------------


def clean_text(text: str | bytes) -> str:
    """Text every store accepts: invalid UTF-8 and lone surrogates become U+FFFD, and so
    does NUL (PostgreSQL refuses it in text columns)."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = _SURROGATES.sub("\ufffd", text)
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text


def cap_line(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes plus a note of how much was cut."""
    if len(text) * 4 <= max_bytes:
        return text
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    kept = data[: max_bytes - 64].decode("utf-8", errors="ignore")
    return f"{kept} … [{len(data) - len(kept.encode()):,} bytes cut: limit SHIPMATE_LOG_MAX_LINE_BYTES]"
