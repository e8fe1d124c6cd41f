"""The file head is decoded once, as it is read (``reading._read_head``), and the text is what
decoding the bytes in one go gives, whatever the encoding, the cut points and short reads."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnclf.data import reading

ENCODINGS = ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-16-le", "utf-32"]


class _Trickle(io.RawIOBase):
    """A pipe-like stream: each read returns at most ``step`` bytes."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step, self.at = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.step if n is None or n < 0 else min(n, self.step)
        out = self.data[self.at : self.at + n]
        self.at += len(out)
        return out


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])  # (the patch is the same for every input)
@given(encoding=st.sampled_from(ENCODINGS), header=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=6),
       body=st.text(max_size=200), junk=st.binary(max_size=8), head_bytes=st.integers(4, 64), step=st.integers(1, 50))
def test_the_head_text_is_the_bytes_decoded_in_one_go(monkeypatch, encoding, header, body, junk, head_bytes, step):
    monkeypatch.setattr(reading, "HEAD_BYTES", head_bytes)  # the header outgrows the first read: the head grows
    text = ",".join(h.replace("\n", " ").replace("\r", " ") for h in header) + "\n" + body
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode(encoding, errors="replace")
    data = data[: len(data) // 2] + junk + data[len(data) // 2 :]  # invalid bytes somewhere
    head, decoded, complete = reading._read_head(Path("x.csv"), _Trickle(data, step), encoding)
    assert data.startswith(head) and (head == data or not complete)
    assert decoded == head.decode(encoding, errors="replace")


def test_estimate_and_reader_agree_on_the_columns(tmp_path):
    """The cache's size estimate sniffs by the reader's rules: a quoted header name holding the
    delimiter is one column, and ';' files are found."""
    path = tmp_path / "d.csv"
    path.write_text('"a;b";c;label\n' + "".join(f"{i};{i * 2};{i % 2}\n" for i in range(50)))
    sniffed = reading.sniff_file(path)
    assert sniffed.sep == ";" and sniffed.names == ["a;b", "c", "label"]
    frame = reading.read_table(path)
    assert list(frame.columns) == sniffed.names


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_wide_header_is_read_whole(tmp_path, encoding):
    names = [f"column_{i}" for i in range(30_000)]  # ~360 KB of header: more than one head read
    path = tmp_path / "wide.csv"
    path.write_bytes((",".join(names) + "\n" + ",".join("1" for _ in names) + "\n").encode(encoding))
    assert reading.sniff_file(path, encoding).names == names
