#!/usr/bin/env python3
"""Writes the seed corpus of //apps/cached:protocol_fuzzer.

Each seed is the fuzzer's 3-byte header (configuration, split seed; see
protocol_fuzzer.cc) followed by a memcached text-protocol request stream:
every command, its noreply form, and the error paths (malformed lines, bad
numbers, long keys, too-large and bad data blocks, long lines, HTTP,
NULs, quit). Deterministic; rerun after changing the format:
  apps/cached/testdata/make_protocol_corpus.py
"""
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "protocol_fuzzer_corpus")

SEEDS = {
    "get_miss": b"get k\r\n",
    "set_get": b"set k 0 0 5\r\nhello\r\nget k\r\n",
    "set_flags_exptime_gets": b"set k 123 100 3\r\nabc\r\ngets k\r\nget k k k\r\n",
    "add_replace": b"add k 0 0 1\r\na\r\nadd k 0 0 1\r\nb\r\nreplace k 0 0 1\r\nc\r\n"
                   b"replace x 0 0 1\r\nd\r\nget k x\r\n",
    "append_prepend": b"set k 0 0 2\r\nmm\r\nappend k 0 0 1\r\nz\r\nprepend k 0 0 1\r\na\r\n"
                      b"append nokey 0 0 1\r\nq\r\nget k\r\n",
    "cas": b"set k 0 0 1\r\na\r\ngets k\r\ncas k 0 0 1 1\r\nb\r\ncas k 0 0 1 99\r\nc\r\n"
           b"cas nokey 0 0 1 1\r\nd\r\ngets k\r\n",
    "delete": b"set k 0 0 1\r\na\r\ndelete k\r\ndelete k\r\ndelete k noreply\r\n"
              b"delete k 0\r\ndelete k 5\r\n",
    "incr_decr": b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nincr n 18446744073709551615\r\n"
                 b"decr nokey 1\r\nset s 0 0 3\r\nabc\r\nincr s 1\r\nincr n x\r\nget n\r\n",
    "incr_length": b"set n 0 0 3\r\n100\r\ndecr n 95\r\nget n\r\nincr n 999999\r\nget n\r\n",
    "touch_gat": b"set k 0 0 1\r\na\r\ntouch k 100\r\ntouch nokey 1\r\ngat 0 k\r\n"
                 b"gats 100 k nokey\r\ntouch k x\r\ngat x k\r\n",
    "expired": b"set k 0 -1 1\r\na\r\nget k\r\nset j 0 1 1\r\nb\r\nget j\r\n"
               b"set abs 0 1600000000 1\r\nc\r\nget abs\r\n",
    "flush_all": b"set k 0 0 1\r\na\r\nflush_all\r\nget k\r\nset k 0 0 1\r\nb\r\n"
                 b"flush_all 10\r\nget k\r\nflush_all noreply\r\nflush_all x\r\nflush_all 0 noreply\r\n",
    "version_verbosity": b"version\r\nverbosity 1\r\nverbosity 5 noreply\r\nverbosity\r\nverbosity x\r\n",
    "stats": b"set k 0 0 1\r\na\r\nget k\r\nstats\r\nstats settings\r\nstats reset\r\nstats\r\n"
             b"stats bogus\r\nstats items\r\nstats slabs\r\n",
    "noreply_all": b"set k 0 0 1 noreply\r\na\r\nadd k 0 0 1 noreply\r\nb\r\n"
                   b"replace k 0 0 1 noreply\r\nc\r\nappend k 0 0 1 noreply\r\nd\r\n"
                   b"prepend k 0 0 1 noreply\r\ne\r\ncas k 0 0 1 1 noreply\r\nf\r\n"
                   b"incr k 1 noreply\r\ntouch k 1 noreply\r\ndelete k noreply\r\nget k\r\n",
    "unknown_command": b"bogus\r\nGET k\r\n\r\n \r\nget\r\nset\r\n",
    "bad_format": b"set k 0 0\r\nset k x 0 1\r\nset k 0 x 1\r\nset k 0 0 x\r\n"
                  b"set k 0 0 -1\r\ncas k 0 0 1\r\nincr k\r\ntouch k\r\n",
    "bad_data_chunk": b"set k 0 0 2\r\nabcd\r\nset k 0 0 2 noreply\r\nab\n\r\nget k\r\n",
    "too_large": b"set k 0 0 5000\r\n" + b"z" * 5000 + b"\r\nget k\r\n"
                 b"set k 0 0 1\r\na\r\nset k 0 0 4090\r\n" + b"y" * 4090 + b"\r\nget k\r\n",
    "too_large_append": b"set k 0 0 400\r\n" + b"a" * 400 + b"\r\n" +
                        b"append k 0 0 400\r\n" + b"b" * 400 + b"\r\nget k\r\n",
    "long_key": b"get a " + b"k" * 251 + b"\r\nset " + b"k" * 251 + b" 0 0 1\r\nx\r\n"
                b"set " + b"k" * 250 + b" 0 0 1\r\ny\r\nget " + b"k" * 250 + b"\r\n",
    "long_line_close": b"set " + b"x" * 2100 + b"\r\nget k\r\n",
    "long_multiget": b"get" + b" key" * 600 + b"\r\nversion\r\n",
    "too_long_multiget_close": b"get" + b" key" * 800 + b"\r\nversion\r\n",
    "http_close": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "quit": b"version\r\nquit\r\nversion\r\n",
    "quit_noreply_after": b"set k 0 0 1\r\na\r\nquit extra\r\nget k\r\n",
    "bare_newlines": b"set k 0 0 1\na\r\nget  k \nget k\n\n\r\n",
    "nul_in_line": b"get k\0junk\r\nset k\x000 0 1\r\na\r\n",
    "tabs_and_spaces": b"get\tk\r\n   get    k   \r\nset k\t0 0 1\r\na\r\n",
    "many_tokens": b"get" + b" k" * 30 + b"\r\nset k 0 0 1 noreply extra tokens here\r\na\r\n",
    "numbers_edge": b"set k 4294967295 0 1\r\na\r\nset k 4294967296 0 1\r\nb\r\n"
                    b"set k 0 2592000 1\r\nc\r\nset k 0 2592001 1\r\nd\r\nset k -1 0 1\r\ne\r\n"
                    b"incr k -1\r\ntouch k 99999999999\r\ngets k\r\n",
    "binary_value": b"set b 7 0 8\r\n\0\r\n\xff\x01\n \r\r\nget b\r\n",
    "eviction": b"".join(b"set key%d 0 0 200\r\n" % i + b"v" * 200 + b"\r\n" for i in range(60))
                + b"get key0 key30 key59\r\nstats\r\n",
    "pipelined_mixed": b"set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nget a b\r\nincr a 1\r\n"
                       b"delete b\r\ngets a b\r\nappend a 0 0 1\r\n0\r\nget a\r\n",
    "partial_request": b"set k 0 0 10\r\nabc",
    "partial_line": b"get ke",
    "swallow_then_more": b"set k 0 0 3000 noreply\r\n" + b"q" * 1000,
    "shutdown_misc": b"shutdown\r\nmisbehave\r\nlru_crawler metadump all\r\nwatch\r\nme k\r\nmg k v\r\n",
    "bget": b"set k 0 0 1\r\na\r\nbget k\r\n",
}

# Header byte 0: bits 0-1 split mode, bit 2 shards, bit 3 small memory,
# bits 4-5 item size limit. A spread of configurations over the seeds.
HEADERS = [0x30, 0x31, 0x32, 0x33, 0x3e, 0x2d, 0x1a, 0x37, 0x0b, 0x26]


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    for i, (name, stream) in enumerate(sorted(SEEDS.items())):
        header = bytes([HEADERS[i % len(HEADERS)], ord("a") + i % 26, ord("k")])
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(header + stream)


if __name__ == "__main__":
    main()
