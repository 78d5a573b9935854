#!/usr/bin/env python3
"""Hand check (not a Bazel test): the same scripted byte stream to a real
memcached and to our Session, replies compared byte for byte.

Builds a seeded script of ~500 requests (every command, noreply, bad data
chunks, too-large values, long keys, malformed lines, odd numbers), sends it
in one write to a fresh `memcached` (Debian's, 1.6.x) on a random local port,
feeds the same bytes to //apps/cached:cached_replay, and compares. The only
normalisation is the version string. Left out on purpose: `stats` (values
differ), meta commands (not implemented), a get with a key over 250 bytes
(memcached then drops the unsent replies of earlier requests in the same
read, which depends on packet boundaries), lines over 2048 bytes (closes).

  ./bazelw build //apps/cached:cached_replay
  python3 apps/cached/memcached_diff.py SEED
"""
import os, random, socket, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
def script(seed):
    r = random.Random(seed)
    key = lambda: "key%d" % r.randrange(12)
    out = []
    st = ["set","add","replace","append","prepend"]
    for i in range(500):
        nr = " noreply" if r.randrange(5) == 0 else ""
        c = r.randrange(24)
        if c < 3:
            v = bytes(r.randrange(256) for _ in range(r.randrange(41)))
            out.append(b"%s %s %d %d %d%s\r\n" % (r.choice(st).encode(), key().encode(), r.randrange(70000), r.randrange(100)-10, len(v), nr.encode()) + v + b"\r\n")
        elif c == 3:
            v = str(r.randrange(1000)).encode()
            out.append(b"set %s 0 0 %d\r\n%s\r\n" % (key().encode(), len(v), v))
        elif c == 4:
            out.append(b"cas %s 0 0 1 %d%s\r\nc\r\n" % (key().encode(), r.randrange(40), nr.encode()))
        elif c == 5:
            out.append(b"%s %s %s %s\r\n" % (r.choice([b"get", b"gets"]), key().encode(), key().encode(), key().encode()))
        elif c == 6:
            out.append(b"%s %d %s\r\n" % (r.choice([b"gat", b"gats"]), r.randrange(20)-5, key().encode()))
        elif c == 7:
            out.append(b"%s %s %d%s\r\n" % (r.choice([b"incr", b"decr"]), key().encode(), r.randrange(500), nr.encode()))
        elif c == 8:
            out.append(b"delete %s%s\r\n" % (key().encode(), nr.encode()))
        elif c == 9:
            out.append(b"touch %s %d%s\r\n" % (key().encode(), r.randrange(20)-5, nr.encode()))
        elif c == 10:
            if r.randrange(8) == 0:
                out.append(b"flush_all%s%s\r\n" % (r.choice([b"", b" 0", b" -1", b" 100"]), nr.encode()))
        elif c == 11:
            out.append(r.choice([b"version\r\n", b"verbosity 1\r\n", b"verbosity x\r\n", b"verbosity\r\n"]))
        elif c == 12:
            out.append(b"set %s 0 0 2%s\r\nabcd\r\n" % (key().encode(), nr.encode()))
        elif c == 13:
            out.append(b"set %s 0 0 1100000%s\r\n" % (key().encode(), nr.encode()) + b"z"*1100000 + b"\r\n")
        elif c == 14:
            out.append(b"set " + b"k"*251 + b" 0 0 1\r\nx\r\ndelete " + b"k"*251 + b"\r\nincr " + b"k"*251 + b" 1\r\n")
        elif c == 15:
            out.append(r.choice([b"bogus command\r\n", b"set k 0 0\r\n", b"\r\n", b"g\r\n", b"shutdown\r\n", b"cas k 0 0 1\r\n"]))
        elif c == 16:
            out.append(b"incr k x\r\ntouch k x\r\ndelete k 5\r\ngat x k\r\ndelete k 0 noreply\r\nflush_all x\r\n")
        elif c == 17:
            out.append(b"get" + b"".join(b" key%d" % (k % 12) for k in range(400)) + b"\r\n")
        elif c == 18:
            out.append(b"get  %s \n" % key().encode())
        elif c == 19:
            out.append(b"get k\x00junk\r\n")
        elif c == 20:
            out.append(b"set %s %s %s %s\r\n1\r\n" % (key().encode(), r.choice([b"4294967296", b"+1", b"-1", b"1x", b"00"]), r.choice([b"0", b"-1", b"+0", b"2592001", b"x"]), r.choice([b"1", b"+1", b"01", b"-1", b"1\tz"])))
        elif c == 21:
            out.append(b"set %s 0 0 %d\r\n%s\r\n" % (key().encode(), 5, r.choice([b" 12  ", b"12 ab", b"-0   ", b"+5   ", b"00007"])))
        else:
            out.append(b"append %s 0 0 1\r\n+\r\n" % key().encode())
    out.append(b"quit\r\n")
    return b"".join(out)

def memcached(data):
    for _ in range(5):
        port = random.randrange(20000, 40000)
        p = subprocess.Popen(["memcached", "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-t", "2", "-u", "root"])
        time.sleep(0.4)
        if p.poll() is None: break
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(data)
        s.settimeout(5)
        out = b""
        while True:
            d = s.recv(1 << 20)
            if not d: break
            out += d
        return out
    finally:
        p.kill(); p.wait()

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
data = script(seed)
theirs = memcached(data)
ours = subprocess.run([os.path.join(ROOT, "bazel-bin/apps/cached/cached_replay")], input=data, capture_output=True).stdout
ours = ours.replace(b"VERSION 1.6.18-eventide", b"VERSION 1.6.18")

print("seed", seed, "input", len(data), "theirs", len(theirs), "ours", len(ours), "EQUAL" if ours == theirs else "DIFF")
if ours != theirs:
    i = next((i for i in range(min(len(ours), len(theirs))) if ours[i] != theirs[i]),
             min(len(ours), len(theirs)))
    print("first diff at", i); print("theirs:", theirs[max(0,i-300):i+200]); print("ours:  ", ours[max(0,i-300):i+200])
sys.exit(0 if ours == theirs else 1)
