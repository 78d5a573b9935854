#!/usr/bin/env python3
"""Writes the seed corpus of //tests:timer_heap_fuzzer.

Each seed is an operation program in the fuzzer's input format (see Op in
timer_heap_fuzzer.cc): an opcode byte, then its arguments little-endian.
Deterministic; rerun after changing the format:
  tests/testdata/make_timer_heap_corpus.py
"""
import os
import random

PUSH, POP, CANCEL, RESCHEDULE, SHIFT, TOP, QUERY, CLEAR, RESERVE, MOVE, WRAP = range(11)
KEY_LIMIT = 1000
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "timer_heap_fuzzer_corpus")


def u16(v):
    return bytes([v & 0xFF, (v >> 8) & 0xFF])


def key(k):  # Range(0, 2000): two bytes
    return u16(k + KEY_LIMIT)


def push(k):
    return bytes([PUSH]) + key(k)


def handle(i, records=0):  # Range(0, records): one byte while records < 256
    return bytes([i]) if records < 256 else u16(i)


def shift(d):  # Range(0, 8000): two bytes
    return bytes([SHIFT]) + u16(d + 4 * KEY_LIMIT)


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    write("push_pop", push(5) + push(-3) + push(7) + bytes([POP, POP, TOP, POP, POP]))
    write("fifo_ties", b"".join(push(0) for _ in range(8)) + bytes([POP] * 8))
    write("cancel_stale", push(1) + push(2) + bytes([CANCEL]) + handle(0) +
          bytes([CANCEL]) + handle(0) + bytes([CANCEL]) + handle(2) +
          bytes([POP, CANCEL]) + handle(1) + push(3) + bytes([QUERY]) + handle(0))
    write("reschedule_ties", push(4) + push(4) + push(4) + bytes([RESCHEDULE]) +
          handle(0) + key(4) + bytes([POP, POP, POP, RESCHEDULE]) + handle(1) + key(9))
    write("shift_clamp", b"".join(push(k) for k in (-900, -10, 0, 10, 900)) +
          shift(1500) + bytes([POP, POP]) + shift(-3999) + bytes([POP, POP, POP]))
    write("clear_reuse", push(1) + push(2) + bytes([CLEAR]) + push(3) +
          bytes([QUERY]) + handle(0) + bytes([CANCEL]) + handle(1) + bytes([POP]))
    write("reserve_spike", bytes([RESERVE]) + u16(200) +
          b"".join(push((i * 37) % 2000 - 1000) for i in range(150)) +
          bytes([RESERVE]) + u16(0) + bytes([POP] * 150))
    write("move", push(3) + push(1) + bytes([MOVE, TOP, CANCEL]) + handle(1) + bytes([POP]))
    write("sequence_wrap", push(0) + push(0) + bytes([WRAP, 15]) +
          b"".join(push(0) + bytes([RESCHEDULE]) + handle(i % 3) + key(0) for i in range(20)) +
          bytes([POP] * 25))
    write("empty", b"")
    # Drain spikes: grow, then empty by pops and cancels (slot-table trim
    # and the lowest-first reuse of free slots).
    rng = random.Random(10)
    for n in range(6):
        prog = b""
        live = 0
        for _ in range(rng.randrange(60, 250)):
            prog += push(rng.randrange(-KEY_LIMIT, KEY_LIMIT + 1))
            live += 1
        for i in range(live):
            if rng.random() < 0.5:
                prog += bytes([CANCEL]) + handle(rng.randrange(0, live), live)
            else:
                prog += bytes([POP])
        write("spike_%d" % n, prog)
    # Random programs of every operation.
    for n in range(16):
        prog = b""
        records = 0
        for _ in range(rng.randrange(20, 300)):
            op = rng.randrange(0, 11)
            small = rng.random() < 0.5
            k = rng.randrange(-5, 6) if small else rng.randrange(-KEY_LIMIT, KEY_LIMIT + 1)
            if op == PUSH:
                prog += push(k)
                records += 1
            elif op in (CANCEL, QUERY):
                prog += bytes([op]) + handle(rng.randrange(0, records + 1), records)
            elif op == RESCHEDULE:
                prog += bytes([op]) + handle(rng.randrange(0, records + 1), records) + key(k)
            elif op == SHIFT:
                prog += shift(rng.randrange(-4 * KEY_LIMIT, 4 * KEY_LIMIT + 1))
            elif op == RESERVE:
                prog += bytes([op]) + u16(rng.randrange(0, 301))
            elif op == WRAP:
                prog += bytes([op, rng.randrange(0, 16)])
            elif op == CLEAR and rng.random() < 0.7:
                continue
            else:
                prog += bytes([op])
        write("random_%02d" % n, prog)


if __name__ == "__main__":
    main()
