#!/usr/bin/env python3
"""Writes the seed corpus of //loop:buffer_fuzzer.

Each seed is an operation program in the fuzzer's input format (see Op and
FuzzInput in buffer_fuzzer.cc). The encoder below tracks the buffer's
contents so that argument ranges that depend on the size are encoded with
the right number of bytes. Deterministic; rerun after changing the format:
  loop/testdata/make_buffer_corpus.py
Files named regression_* are inputs that once failed; this script keeps them.
"""
import os
import random

(APPEND_VIEW, APPEND_CSTRING, APPEND_STRING, APPEND_EXTERNAL, APPEND_BUFFER,
 RESERVE_COMMIT, FIND, COPY_OUT_PEEK, PULLUP, CONSUME, TAKE, TAKE_LINE, CLEAR,
 SET_MAX_SIZE, READ_FROM, WRITE, EOF_AND_ERRORS, MOVE) = range(18)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "buffer_fuzzer_corpus")


def nbytes(span):
    n = 0
    while span:
        n += 1
        span >>= 8
    return n


class Program:
    """Encodes operations; `model` follows the buffer (no cap is used)."""

    def __init__(self):
        self.data = bytearray([0])  # no initial cap
        self.model = b""

    def range(self, lo, hi, v):
        n = nbytes(hi - lo)
        self.data += (v - lo).to_bytes(n, "little") if n else b""

    def boolean(self, b):
        self.data.append(1 if b else 0)

    def op(self, o):
        self.data.append(o)

    def pattern(self, pattern, length):
        self.range(1, 8, len(pattern))
        self.data += pattern
        return (pattern * (length // len(pattern) + 1))[:length]

    def length(self, n):
        if n <= 16:
            self.data.append(0)
            self.range(0, 16, n)
        elif n <= 300:
            self.data.append(1)
            self.range(0, 300, n)
        elif 900 <= n <= 5000:
            self.data.append(2)
            self.range(900, 5000, n)
        else:
            self.data.append(3)
            self.range(0, 70000, n)

    def append_view(self, b):
        self.op(APPEND_VIEW)
        self.range(0, 64, len(b))
        self.data += b
        self.model += b

    def append_string(self, pattern, n):
        self.op(APPEND_STRING)
        self.length(n)
        self.model += self.pattern(pattern, n)

    def append_external(self, pieces, piece_len, pattern):
        self.op(APPEND_EXTERNAL)
        self.range(1, 1100, pieces)
        self.range(0, 4 if pieces > 10 else 3000, piece_len)
        self.model += self.pattern(pattern, pieces * piece_len)

    def find(self, needle, start):
        self.op(FIND)
        self.range(0, 5, len(needle))
        self.boolean(False)
        self.data += needle
        self.range(0, len(self.model) + 2, start)

    def find_inside(self, at, length, start):
        self.op(FIND)
        self.range(0, 5, length)
        self.boolean(True)
        if self.model:
            self.range(0, len(self.model) - 1, at)
        else:
            self.data += b"\0" * length
        self.range(0, len(self.model) + 2, start)

    def sized(self, o, n):  # CONSUME, TAKE, PULLUP
        self.op(o)
        self.range(0, len(self.model) + 2, n)
        if o != PULLUP:
            self.model = self.model[n:]

    def copy_out(self, offset, n):
        self.op(COPY_OUT_PEEK)
        self.range(0, len(self.model) + 2, offset)
        self.range(0, len(self.model) + 2, n)

    def take_line(self, delimiter):
        self.op(TAKE_LINE)
        crlf = delimiter == b"\r\n"
        self.boolean(crlf)
        if not crlf:
            self.range(0, 3, len(delimiter))
            self.data += delimiter
        self.boolean(True)
        at = self.model.find(delimiter)
        if at >= 0:
            self.model = self.model[at + len(delimiter):]

    def write(self, max_bytes=None, send=False):
        self.op(WRITE)
        self.boolean(max_bytes is None)
        if max_bytes is not None:
            self.length(max_bytes)
        self.boolean(send)
        n = len(self.model) if max_bytes is None else min(max_bytes, len(self.model))
        self.model = self.model[n:]  # a socket takes it all at these sizes

    def read_from(self, data, max_bytes=None):
        self.op(READ_FROM)
        if len(data) <= 64:
            self.range(0, 4, 1)
            self.range(0, 64, len(data))
        else:
            self.range(0, 4, 0)
            self.length(len(data))
        pattern = data[:8] if data else b"x"
        got = self.pattern(pattern, len(data))
        self.boolean(max_bytes is None)
        if max_bytes is not None:
            self.range(0, 70000, max_bytes)
        n = len(got) if max_bytes is None else min(max_bytes, len(got))
        self.model += got[:n]

    def simple(self, o):
        self.op(o)
        if o == CLEAR:
            self.model = b""


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes(data))


def scenarios():
    p = Program()
    p.append_view(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.take_line(b"\r\n")
    p.take_line(b"\r\n")
    p.find(b"\r\n\r\n", 0)
    p.take_line(b"\r\n")
    yield "lines", p
    p = Program()
    for i in range(40):
        p.append_view(bytes([97 + i % 26]))
    p.find_inside(10, 5, 0)
    p.sized(PULLUP, 30)
    p.sized(CONSUME, 7)
    p.copy_out(3, 20)
    yield "small_appends_pullup", p
    p = Program()
    p.append_string(b"ab", 1500)  # adopted
    p.append_view(b"\r\n")
    p.append_string(b"c", 5000)
    p.find(b"b\r\nc", 0)
    p.sized(TAKE, 1499)
    p.write(None, send=True)
    yield "adopted_and_send", p
    p = Program()
    p.append_external(1100, 1, b"xyz")  # more blocks than IOV_MAX
    p.write(None)
    p.write(None)
    yield "external_iov_max", p
    p = Program()
    p.append_external(3, 1000, b"e")
    p.sized(CONSUME, 3000)
    p.append_view(b"after")
    yield "external_release", p
    p = Program()
    p.read_from(b"hello from the socket")
    p.read_from(b"r" * 20000, 5000)
    p.read_from(b"", None)
    p.write(7)
    yield "read_write", p
    p = Program()
    p.append_view(b"x" * 10)
    p.op(SET_MAX_SIZE)
    p.data += bytes([1])
    p.range(0, 10, 12 % 11)
    p.append_view(b"too much")
    p.op(RESERVE_COMMIT)
    p.range(0, 9000, 100)
    yield "cap", p
    p = Program()
    p.append_view(b"partial")
    p.op(EOF_AND_ERRORS)
    p.range(0, 32, 5)
    p.data += b"tail!"
    yield "eof_and_errors", p
    p = Program()
    p.append_view(b"move me")
    p.simple(MOVE)
    p.op(APPEND_BUFFER)
    p.boolean(False)
    p.range(0, 4, 2)
    p.length(3)
    p.pattern(b"ab", 3)
    p.length(2000)
    p.pattern(b"Z", 2000)
    p.boolean(False)
    p.simple(CLEAR)
    yield "move_append_buffer", p


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if not f.startswith("regression_"):
            os.remove(os.path.join(OUT, f))
    for name, p in scenarios():
        write(name, p.data)
    write("empty", b"")
    rng = random.Random(7)
    for n in range(20):
        p = Program()
        for _ in range(rng.randrange(5, 40)):
            o = rng.randrange(0, 10)
            if o == 0:
                p.append_view(bytes(rng.choice(b"ab\r\n") for _ in range(rng.randrange(0, 30))))
            elif o == 1:
                p.append_string(bytes([rng.randrange(97, 100)]), rng.choice([5, 200, 1200, 4500, 9000]))
            elif o == 2:
                p.append_external(rng.randrange(1, 20), rng.randrange(0, 5), b"e")
            elif o == 3:
                p.find_inside(rng.randrange(0, max(1, len(p.model))), rng.randrange(0, 6),
                              rng.randrange(0, len(p.model) + 3))
            elif o == 4:
                p.sized(rng.choice([CONSUME, TAKE, PULLUP]), rng.randrange(0, len(p.model) + 3))
            elif o == 5:
                p.take_line(rng.choice([b"\r\n", b"a", b"ba"]))
            elif o == 6:
                p.write(rng.choice([None, 3, 100, 5000]), rng.random() < 0.5)
            elif o == 7:
                p.read_from(bytes([rng.randrange(97, 123)]) * rng.randrange(0, 3000))
            elif o == 8:
                p.copy_out(rng.randrange(0, len(p.model) + 3), rng.randrange(0, len(p.model) + 3))
            else:
                p.simple(rng.choice([MOVE, MOVE, CLEAR]))
        write("random_%02d" % n, p.data)


if __name__ == "__main__":
    main()
