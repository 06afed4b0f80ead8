"""Text inputs in any encoding, read as blocks of UTF-8 bytes.

Other encodings are transcoded on the way in, a byte-order mark is dropped, and bytes that
are not valid in the declared encoding are kept as markers that :func:`describe_bad_bytes`
explains, so the row holding them can be rejected with its line number instead of failing the
whole file.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator

import pyarrow as pa

from quiver.runtime.errors import ConfigError

__all__ = ["TextBlocks", "describe_bad_bytes", "normalize_encoding", "raw_text"]

_MARK_ERRORS = "quiver-bad-bytes"


def _mark_bad_bytes(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: keep each undecodable byte as a lone surrogate U+DC00+byte."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(chr(0xDC00 + b) for b in bad), exc.end


def _register_error_handler() -> None:
    try:
        codecs.lookup_error(_MARK_ERRORS)
    except LookupError:
        codecs.register_error(_MARK_ERRORS, _mark_bad_bytes)


def normalize_encoding(encoding: str, where: str) -> str:
    """The codec name for ``encoding``, or a ConfigError listing a few valid names."""
    try:
        return codecs.lookup(encoding).name
    except LookupError as exc:
        raise ConfigError.one(
            f"unknown encoding {encoding!r}",
            where,
            "use a Python codec name such as utf-8, utf-8-sig, latin-1, cp1252, utf-16",
        ) from exc


class TextBlocks:
    """Blocks of UTF-8 bytes read from a text input in any encoding.

    ``utf-8`` input is passed through untouched (a leading BOM is dropped); other encodings are
    decoded incrementally and re-encoded as UTF-8. Bytes that are invalid in the source
    encoding become the UTF-8 encoding of lone surrogates, which are themselves invalid UTF-8:
    the parser then rejects just the rows holding them, and :func:`describe_bad_bytes` turns
    them back into the original byte values for the message.
    """

    def __init__(self, stream: pa.NativeFile, encoding: str, block_size: int) -> None:
        self.stream = stream
        self.block_size = block_size
        self.codec = codecs.lookup(encoding).name
        self._first = True
        self._decoder: codecs.IncrementalDecoder | None = None
        if self.codec not in ("utf-8", "utf-8-sig"):
            _register_error_handler()
            self._decoder = codecs.getincrementaldecoder(self.codec)(errors=_MARK_ERRORS)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            raw = self.stream.read(self.block_size)
            final = not raw
            block = self._convert(raw, final)
            if block:
                yield block
            if final:
                return

    def _convert(self, raw: bytes, final: bool) -> bytes:
        if self._decoder is None:
            if self._first and raw:
                self._first = False
                if raw.startswith(codecs.BOM_UTF8):
                    raw = raw[3:]
                elif len(raw) < 3 and codecs.BOM_UTF8.startswith(raw):
                    more = self.stream.read(3 - len(raw))
                    raw = (raw + more).removeprefix(codecs.BOM_UTF8)
            return raw
        text = self._decoder.decode(raw, final)
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        return text.encode("utf-8", "surrogatepass")


_SURROGATE = re.compile(rb"\xed[\xb0-\xbf][\x80-\xbf]")


def describe_bad_bytes(data: bytes, encoding: str) -> str | None:
    """Why ``data`` (UTF-8 from :class:`TextBlocks`) is not valid text, or None if it is."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        match = _SURROGATE.match(data, exc.start)
        if match is not None:
            code = 0xD000 | (match[0][1] & 0x3F) << 6 | (match[0][2] & 0x3F)
            original = code - 0xDC00
            return (
                f"byte 0x{original:02x} is not valid {encoding} (byte {exc.start + 1} of the row)"
            )
        bad = data[exc.start : exc.end]
        return f"invalid {encoding} byte sequence {bad.hex(' ')} at byte {exc.start + 1} of the row"
    return None


def raw_text(raw: bytes, limit: int = 4096) -> str:
    """A record's bytes as text for a rejects file: bytes that were invalid in the source
    encoding appear as ``\\xNN``, the line break is dropped, and long records are cut."""
    try:
        text = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "backslashreplace")
    text = _MARKED.sub(lambda m: f"\\x{ord(m[0]) - 0xDC00:02x}", text).rstrip("\r\n")
    # other surrogates were encoded in the input itself (invalid UTF-8): their bytes
    text = _SURROGATES.sub(
        lambda m: "".join(f"\\x{b:02x}" for b in m[0].encode("utf-8", "surrogatepass")), text
    )
    return text if len(text) <= limit else text[:limit] + "..."


_MARKED = re.compile("[\udc00-\udcff]")
_SURROGATES = re.compile("[\ud800-\udfff]")
