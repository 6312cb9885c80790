#!/usr/bin/env python3
"""Helpers of benches/soak.sh (Python 3 standard library only). Three modes:

verify  a self-verifying writer/reader (text and binary connections). Every
        value encodes its key and a per-key version, with a CRC-32 over it and
        flags derived from (key, version), so a read tells a correct value
        from a corrupted or another key's one. Writers own disjoint key
        partitions and write one request at a time, so per key the versions
        are issued in order; the verifier tracks, per key, the latest
        acknowledged version and the writes in flight, plus the writes whose
        outcome is unknown (no reply: connection lost or timed out; error
        reply). A read of a key is judged against what was possible while it
        was in flight: the version acknowledged when it was sent, any version
        issued up to when its reply came, and any write of unknown outcome.
        A value of an older acknowledged-then-overwritten version is stale; a
        miss when only values were possible is missing_acknowledged; a value
        whose checksum, key, length, payload or flags are wrong, or whose
        version was never written, is corrupted_or_foreign. On SIGUSR1 it
        re-reads every key it ever wrote (a sweep; soak.sh sends it after
        restarting rend or memcached); on SIGTERM or at --duration it stops
        the writers, sweeps once more with nothing in flight, and exits (1 if
        anything was wrong). Counters go to --status every second as
        key=value lines.
fuzz    seeded malformed traffic: valid text and binary requests, many of
        them mutated (byte flips, truncations, long lines, bad lengths,
        bad binary header fields, garbage), on --conns connections; each
        session is a fresh connection of 1-60 requests, so it reconnects
        whenever rend closes one. A reply containing "panic" is counted
        (panic_replies) and logged with the session seed; `fuzz --replay
        SEED` sends that one session again. flush_all is never sent (text or
        binary, also not by accident of a mutation).
resets  COUNT clients that connect, send half a request (text or binary,
        some announcing a value and sending half of it), then close with
        SO_LINGER 0 so the kernel sends RST.
"""

import argparse
import asyncio
import hashlib
import os
import random
import signal
import socket
import struct
import sys
import time
import zlib

HOST = "127.0.0.1"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def write_status(path, counters):
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for k, v in counters.items():
            f.write(f"{k}={v}\n")
    os.replace(tmp, path)


class Pacer:
    """A shared schedule of `rate` operations a second (0: unpaced)."""

    def __init__(self, rate):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()

    async def wait(self):
        if not self.interval:
            await asyncio.sleep(0)
            return
        now = time.monotonic()
        if self.next < now - 1.0:
            self.next = now
        t = self.next
        self.next += self.interval
        if t > now:
            await asyncio.sleep(t - now)


# ---------------------------------------------------------------- values

def value_for(key, ver):
    """The value of version `ver` of `key`: a header, a payload derived from
    both, then a CRC-32 over everything before it."""
    d = hashlib.sha256(b"%s:%d" % (key, ver)).digest()
    r = d[0]
    x = int.from_bytes(d[1:4], "big")
    if r < 179:  # 70%
        n = 16 + x % 885
    elif r < 243:  # 25%
        n = 1000 + x % 5001
    else:  # 5%
        n = 6000 + x % 34001
    payload = (d * (n // 32 + 1))[:n]
    body = b"SV1 %s %d %d " % (key, ver, n) + payload
    return body + b" %08x" % zlib.crc32(body)


def flags_for(key, ver):
    return zlib.crc32(b"%s/%d" % (key, ver))


BAD = "bad"


def decode(key, value, flags):
    """(version, None) for a well-formed value of `key`, else (BAD, why)."""
    if len(value) < 9 or value[-9:-8] != b" ":
        return BAD, "no checksum"
    body = value[:-9]
    try:
        crc = int(value[-8:], 16)
    except ValueError:
        return BAD, "bad checksum field"
    if zlib.crc32(body) != crc:
        return BAD, "checksum mismatch"
    parts = body.split(b" ", 4)
    if len(parts) != 5 or parts[0] != b"SV1":
        return BAD, "bad header"
    if parts[1] != key:
        return BAD, "foreign: value of key %r" % parts[1][:60]
    try:
        ver = int(parts[2])
    except ValueError:
        return BAD, "bad version"
    if ver < 1 or value != value_for(key, ver):
        return BAD, "payload or length differs from version %d" % ver
    if flags != flags_for(key, ver):
        return BAD, "flags %d, not %d, for version %d" % (flags, flags_for(key, ver), ver)
    return ver, None


# ---------------------------------------------------------------- clients

class Lost(Exception):
    """No usable reply: the connection broke, timed out or desynchronised."""


class Conn:
    def __init__(self, port, binary, timeout):
        self.port = port
        self.binary = binary
        self.timeout = timeout
        self.r = self.w = None

    async def open(self):
        self.r, self.w = await asyncio.wait_for(
            asyncio.open_connection(HOST, self.port), self.timeout)

    def close(self):
        if self.w is not None:
            try:
                self.w.transport.abort()
            except Exception:
                pass
        self.r = self.w = None

    async def call(self, coro):
        try:
            return await asyncio.wait_for(coro, self.timeout)
        except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError, Lost) as e:
            self.close()
            raise Lost(type(e).__name__ + ": " + str(e)[:200])

    # Each returns ("ok"|"miss"|"error", detail) or raises Lost.
    async def set(self, key, flags, value):
        return await self.call(self._bset(key, flags, value) if self.binary
                               else self._tset(key, flags, value))

    async def delete(self, key):
        return await self.call(self._bdel(key) if self.binary else self._tdel(key))

    async def get_many(self, keys):
        """{key: (flags, value)} for the hits."""
        return await self.call(self._bget(keys) if self.binary else self._tget(keys))

    async def _line(self):
        line = await self.r.readuntil(b"\r\n")
        return line[:-2]

    async def _tset(self, key, flags, value):
        self.w.write(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(value), value))
        await self.w.drain()
        line = await self._line()
        return ("ok", line) if line == b"STORED" else ("error", line)

    async def _tdel(self, key):
        self.w.write(b"delete %s\r\n" % key)
        await self.w.drain()
        line = await self._line()
        if line == b"DELETED":
            return "ok", line
        if line == b"NOT_FOUND":
            return "miss", line
        return "error", line

    async def _tget(self, keys):
        self.w.write(b"get " + b" ".join(keys) + b"\r\n")
        await self.w.drain()
        out = {}
        while True:
            line = await self._line()
            if line == b"END":
                return out
            parts = line.split(b" ")
            if parts[0] != b"VALUE" or len(parts) < 4:
                # An error line: the reply's end is unknown, start afresh.
                raise Lost("get answered %r" % line[:100])
            data = await self.r.readexactly(int(parts[3]) + 2)
            if data[-2:] != b"\r\n":
                raise Lost("value not followed by CRLF")
            out[parts[1]] = (int(parts[2]), data[:-2])

    def _breq(self, op, key=b"", extras=b"", value=b"", opaque=0):
        return struct.pack(">BBHBBHIIQ", 0x80, op, len(key), len(extras), 0, 0,
                           len(extras) + len(key) + len(value), opaque, 0) + extras + key + value

    async def _bresp(self):
        h = await self.r.readexactly(24)
        magic, op, kl, el, _dt, status, bl, opaque, cas = struct.unpack(">BBHBBHIIQ", h)
        if magic != 0x81 or kl + el > bl:
            raise Lost("bad binary reply header %s" % h.hex())
        body = await self.r.readexactly(bl)
        return op, status, body[:el], body[el:el + kl], body[el + kl:], opaque

    async def _bset(self, key, flags, value):
        self.w.write(self._breq(0x01, key, struct.pack(">II", flags, 0), value))
        await self.w.drain()
        op, status, _e, _k, v, _o = await self._bresp()
        if op != 0x01:
            raise Lost("set answered opcode %#x" % op)
        return ("ok", b"") if status == 0 else ("error", b"status %#x %s" % (status, v[:100]))

    async def _bdel(self, key):
        self.w.write(self._breq(0x04, key))
        await self.w.drain()
        op, status, _e, _k, v, _o = await self._bresp()
        if op != 0x04:
            raise Lost("delete answered opcode %#x" % op)
        if status == 0:
            return "ok", b""
        if status == 1:
            return "miss", b""
        return "error", b"status %#x %s" % (status, v[:100])

    async def _bget(self, keys):
        out = {}
        if len(keys) == 1:
            self.w.write(self._breq(0x00, keys[0]))
            await self.w.drain()
            op, status, e, _k, v, _o = await self._bresp()
            if op != 0x00:
                raise Lost("get answered opcode %#x" % op)
            if status == 0:
                out[keys[0]] = (struct.unpack(">I", e[:4])[0] if len(e) >= 4 else -1, v)
            elif status != 1:
                raise Lost("get answered status %#x %r" % (status, v[:100]))
            return out
        # GETKQ per key (hits only), then NOOP ends the batch.
        self.w.write(b"".join(self._breq(0x0D, k, opaque=i) for i, k in enumerate(keys))
                     + self._breq(0x0A, opaque=len(keys)))
        await self.w.drain()
        while True:
            op, status, e, k, v, _o = await self._bresp()
            if op == 0x0A:
                return out
            if op != 0x0D or status != 0:
                raise Lost("getkq answered opcode %#x status %#x %r" % (op, status, v[:100]))
            out[k] = (struct.unpack(">I", e[:4])[0] if len(e) >= 4 else -1, v)


# ---------------------------------------------------------------- verify

class KeyState:
    __slots__ = ("acked", "issued", "sets", "maybe")

    def __init__(self):
        self.acked = 0    # latest acknowledged version (0: never written)
        self.issued = 0   # latest version issued
        self.sets = 0     # bit v set: version v is a set (else a delete)
        self.maybe = ()   # versions whose outcome is unknown

    def outcome(self, v):
        """What a read sees after version v: the value's version, or None."""
        return v if v > 0 and (self.sets >> v) & 1 else None


class Verifier:
    COUNTERS = ["requests", "writes", "writes_acked", "deletes", "writes_unknown",
                "errors", "reconnects", "reads", "correct", "unacked_seen",
                "corrupted_or_foreign", "missing_acknowledged", "stale",
                "sweeps", "sweep_reads", "sweep_bad", "final_sweep_reads", "final_sweep_bad",
                "final_sweep_done"]

    def __init__(self, a):
        self.a = a
        self.c = {k: 0 for k in self.COUNTERS}
        self.prefix = b"soak:%d:" % a.seed
        self.state = [KeyState() for _ in range(a.keys)]
        self.written = []
        self.pacer = Pacer(a.rate)
        self.stopping = False
        self.sweep_requests = asyncio.Queue()
        self.logged = {}

    def key(self, i):
        return self.prefix + b"%06d" % i

    def report(self, kind, msg):
        n = self.logged.get(kind, 0)
        self.logged[kind] = n + 1
        if n < 50:
            log(kind + ":", msg)

    def judge(self, idx, v0, got, sweep):
        """Classify one read of key idx sent when version v0 was acknowledged;
        got is None (miss) or (flags, value)."""
        st = self.state[idx]
        key = self.key(idx)
        v1 = st.issued
        self.c["reads"] += 1
        if sweep:
            self.c[sweep + "_reads"] += 1
        if got is None:
            seen, why = None, None
        else:
            seen, why = decode(key, got[1], got[0])
        allowed = {st.outcome(v) for v in range(v0, v1 + 1)}
        allowed.update(st.outcome(v) for v in st.maybe)
        if seen is not BAD and seen in allowed:
            self.c["correct"] += 1
            if seen != st.outcome(v0):
                self.c["unacked_seen"] += 1
            return
        if sweep:
            self.c[sweep + "_bad"] += 1
        detail = "key %s acked v%d, issued up to v%d, unknown %s, sets %s%s" % (
            key.decode(), v0, v1, sorted(st.maybe),
            [v for v in range(max(1, v0 - 3), v1 + 1) if st.outcome(v)],
            " (%s)" % sweep if sweep else "")
        if seen is BAD:
            self.c["corrupted_or_foreign"] += 1
            self.report("corrupted_or_foreign", "%s: %s; %d bytes, first %r" % (
                why, detail, len(got[1]), got[1][:80]))
        elif seen is None:
            self.c["missing_acknowledged"] += 1
            self.report("missing_acknowledged", "miss: " + detail)
        elif seen < v0:
            self.c["stale"] += 1
            self.report("stale", "got v%d: %s" % (seen, detail))
        else:
            self.c["corrupted_or_foreign"] += 1
            self.report("corrupted_or_foreign", "got v%d, never written as a set: %s" % (seen, detail))

    async def ensure(self, conn):
        while conn.w is None:
            try:
                await conn.open()
                return
            except (OSError, asyncio.TimeoutError):
                if time.monotonic() > self.hard_deadline:
                    raise
                await asyncio.sleep(0.1)

    async def connected(self, conn):
        if conn.w is None:
            await self.ensure(conn)
            self.c["reconnects"] += 1

    async def writer(self, w):
        rng = random.Random(self.a.seed * 7919 + w)
        conn = Conn(self.a.port, binary=(w % 2 == 1), timeout=self.a.timeout)
        await self.ensure(conn)
        mine = range(w, self.a.keys, self.a.writers)
        while not self.stopping:
            await self.pacer.wait()
            if self.stopping:
                break
            await self.connected(conn)
            idx = rng.choice(mine)
            st = self.state[idx]
            key = self.key(idx)
            delete = st.issued > 0 and rng.random() < 0.1
            if st.issued == 0:
                self.written.append(idx)
            v0 = st.acked
            v = st.issued + 1
            st.issued = v
            if not delete:
                st.sets |= 1 << v
            self.c["requests"] += 1
            try:
                if delete:
                    self.c["deletes"] += 1
                    res, detail = await conn.delete(key)
                else:
                    self.c["writes"] += 1
                    res, detail = await conn.set(key, flags_for(key, v), value_for(key, v))
            except Lost as e:
                self.c["errors"] += 1
                self.c["writes_unknown"] += 1
                st.maybe = tuple(st.maybe) + (v,)
                self.report("write_lost", "%s v%d: %s" % (key.decode(), v, e))
                continue
            if res == "error":
                self.c["errors"] += 1
                self.c["writes_unknown"] += 1
                st.maybe = tuple(st.maybe) + (v,)
                self.report("write_error", "%s v%d: %r" % (key.decode(), v, detail))
                continue
            if delete:
                # DELETED says the key held a value, NOT_FOUND that it did not.
                allowed = {st.outcome(x) for x in range(v0, v)} | {st.outcome(x) for x in st.maybe}
                if res == "miss" and None not in allowed:
                    self.c["missing_acknowledged"] += 1
                    self.report("missing_acknowledged", "delete of %s answered NOT_FOUND; acked v%d" % (key.decode(), v0))
                elif res == "ok" and allowed == {None}:
                    self.c["stale"] += 1
                    self.report("stale", "delete of %s answered DELETED, but acked v%d is absent" % (key.decode(), v0))
            self.c["writes_acked"] += 1
            st.acked = v
        conn.close()

    async def reader(self, r):
        rng = random.Random(self.a.seed * 104729 + r)
        conn = Conn(self.a.port, binary=(r % 2 == 0), timeout=self.a.timeout)
        await self.ensure(conn)
        while not self.stopping:
            await self.pacer.wait()
            if not self.written:
                await asyncio.sleep(0.05)
                continue
            await self.connected(conn)
            n = 1 if rng.random() < 0.6 else rng.randint(2, 20)
            batch = list({rng.choice(self.written) for _ in range(n)})
            await self.read(conn, batch, None)
        conn.close()

    async def read(self, conn, batch, sweep):
        """Read and judge a batch; False if no reply came."""
        v0s = [self.state[i].acked for i in batch]
        self.c["requests"] += 1
        try:
            got = await conn.get_many([self.key(i) for i in batch])
        except Lost as e:
            self.c["errors"] += 1
            self.report("read_lost", str(e))
            return False
        for i, v0 in zip(batch, v0s):
            self.judge(i, v0, got.get(self.key(i)), sweep)
        return True

    async def sweep(self, kind):
        """Read every key ever written, 50 at a time, retrying a batch
        that got no reply (rend may still be starting)."""
        conn = Conn(self.a.port, binary=False, timeout=self.a.timeout)
        keys = list(self.written)
        t0 = time.monotonic()
        bad0 = self.c[kind + "_bad"]
        for s in range(0, len(keys), 50):
            while True:
                if time.monotonic() > self.hard_deadline:
                    log("sweep abandoned at the deadline")
                    return
                try:
                    await self.ensure(conn)
                except (OSError, asyncio.TimeoutError):
                    continue
                if await self.read(conn, keys[s:s + 50], kind):
                    break
                await asyncio.sleep(0.1)
        conn.close()
        log("%s: %d keys read in %.1f s, %d wrong" % (
            kind, len(keys), time.monotonic() - t0, self.c[kind + "_bad"] - bad0))

    async def sweeper(self):
        while True:
            await self.sweep_requests.get()
            while not self.sweep_requests.empty():
                self.sweep_requests.get_nowait()
            self.c["sweeps"] += 1
            await self.sweep("sweep")

    async def status(self):
        while True:
            write_status(self.a.status, self.c)
            await asyncio.sleep(1)

    async def run(self):
        a = self.a
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: self.sweep_requests.put_nowait(1))
        self.hard_deadline = time.monotonic() + a.duration + 60
        side = [asyncio.create_task(self.status()), asyncio.create_task(self.sweeper())]
        workers = [asyncio.create_task(self.writer(w)) for w in range(a.writers)]
        workers += [asyncio.create_task(self.reader(r)) for r in range(a.readers)]
        try:
            await asyncio.wait_for(stop.wait(), a.duration)
        except asyncio.TimeoutError:
            pass
        self.stopping = True
        done, pending = await asyncio.wait(workers, timeout=a.timeout + 5)
        for t in pending:
            t.cancel()
        for t in done:
            if t.exception():
                log("task failed:", repr(t.exception()))
        side[1].cancel()
        # Nothing in flight now: every key must read as acknowledged (or as
        # a write of unknown outcome).
        await self.sweep("final_sweep")
        self.c["final_sweep_done"] = 1
        write_status(a.status, self.c)
        side[0].cancel()
        print(" ".join("%s=%d" % kv for kv in self.c.items()))
        bad = self.c["corrupted_or_foreign"] + self.c["missing_acknowledged"] + self.c["stale"]
        return 1 if bad else 0


# ---------------------------------------------------------------- fuzz

HEX = b"0123456789abcdef"


def fz_key(rng):
    r = rng.random()
    if r < 0.85:
        return b"fz:%d" % rng.randrange(500)
    if r < 0.93:
        return b"k" * rng.randint(245, 256)
    return bytes(rng.choice(b"abcdexyz0123456789:_-.") for _ in range(rng.randint(1, 40)))


def fz_data(rng):
    n = rng.choice([0, 1, 2, 10, 100, 1000, 1100, 2500, rng.randint(0, 30000)])
    return rng.randbytes((n + 1) // 2).hex().encode()[:n]


def gen_text(rng):
    k = fz_key(rng)
    nr = b" noreply" if rng.random() < 0.15 else b""
    c = rng.randrange(12)
    if c <= 2:
        verb = rng.choice([b"set", b"add", b"replace", b"append", b"prepend"])
        d = fz_data(rng)
        return b"%s %s %d %d %d%s\r\n%s\r\n" % (verb, k, rng.choice([0, 1, 65535, 2**32 - 1]),
                                                 rng.choice([0, 0, 100, -1]), len(d), nr, d)
    if c == 3:
        d = fz_data(rng)
        return b"cas %s 0 0 %d %d%s\r\n%s\r\n" % (k, len(d), rng.randrange(2**40), nr, d)
    if c <= 5:
        verb = rng.choice([b"get", b"gets", b"gat 100", b"gats 0"])
        return verb + b" " + b" ".join(fz_key(rng) for _ in range(rng.randint(1, 8))) + b"\r\n"
    if c == 6:
        return b"%s %s %d%s\r\n" % (rng.choice([b"incr", b"decr"]), k,
                                    rng.choice([0, 1, 2**64 - 1, 77]), nr)
    if c == 7:
        return b"delete %s%s\r\n" % (k, rng.choice([b"", b" 0", nr]))
    if c == 8:
        return b"touch %s %d%s\r\n" % (k, rng.choice([0, 10, -1]), nr)
    if c == 9:
        return rng.choice([b"version\r\n", b"verbosity 1\r\n", b"stats\r\n", b"stats settings\r\n",
                           b"mg %s v\r\n" % k, b"ms %s 2\r\nab\r\n" % k, b"noop\r\n"])
    if c == 10:
        return b"get %s\r\n" % b" ".join(b"fz:%d" % i for i in range(rng.randint(100, 17000)))
    return b"quit\r\n" if rng.random() < 0.1 else b"version\r\n"


def breq(op, key=b"", extras=b"", value=b"", keylen=None, extlen=None, bodylen=None,
         magic=0x80, datatype=0, cas=0, opaque=0):
    kl = len(key) if keylen is None else keylen
    el = len(extras) if extlen is None else extlen
    bl = len(extras) + len(key) + len(value) if bodylen is None else bodylen
    return struct.pack(">BBHBBHIIQ", magic, op, kl & 0xFFFF, el & 0xFF, datatype, 0,
                       bl & 0xFFFFFFFF, opaque, cas) + extras + key + value


def gen_binary(rng):
    k = fz_key(rng)
    op = rng.choice([0x00, 0x09, 0x0C, 0x0D, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x06,
                     0x0A, 0x0B, 0x0E, 0x0F, 0x10, 0x1B, 0x1C, 0x1D, 0x1E, 0x40, 0x41,
                     rng.randrange(0x20, 0x100)])
    if op in (0x01, 0x02, 0x03, 0x11):
        return breq(op, k, struct.pack(">II", rng.randrange(2**32), rng.choice([0, 100])),
                    fz_data(rng), cas=rng.choice([0, 0, rng.randrange(2**64)]))
    if op in (0x0E, 0x0F):
        return breq(op, k, b"", fz_data(rng))
    if op in (0x05, 0x06):
        return breq(op, k, struct.pack(">QQI", rng.choice([1, 2**64 - 1]), 0,
                                       rng.choice([0, 0xFFFFFFFF])))
    if op in (0x1C, 0x1D, 0x1E):
        return breq(op, k, struct.pack(">I", rng.choice([0, 100])))
    if op == 0x1B:
        return breq(op, b"", struct.pack(">I", 1))
    if op in (0x0A, 0x0B):
        return breq(op)
    if op == 0x10:
        return breq(op, rng.choice([b"", b"settings", b"items"]))
    if rng.random() < 0.02:
        return breq(0x07)  # quit
    return breq(op, k)


def mutate_text(rng, req):
    b = bytearray(req)
    m = rng.randrange(9)
    if m == 0 and b:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif m == 1 and b:
        del b[rng.randrange(len(b)):]
    elif m == 2:
        b = bytearray(rng.choice([b"get ", b"set ", b"", b"gets ", b"delete "])
                      + b"k" * rng.randint(2000, 70000) + rng.choice([b"\r\n", b"", b"\n"]))
    elif m == 3:
        # A bad <bytes> field (or flags, exptime, cas) in a storage command.
        parts = bytes(b).split(b"\r\n", 1)
        toks = parts[0].split(b" ")
        if len(toks) >= 5:
            i = rng.choice([2, 3, 4, 4, 4] + ([5] if len(toks) > 5 else []))
            toks[i] = rng.choice([b"-1", b"4294967296", b"99999999999999999999", b"abc", b"",
                                  b"%d" % (int(toks[4]) + rng.randint(-5, 5)) if toks[4].isdigit() else b"1",
                                  b"2147483648", b"-2147483649", b"0x10", b"+5"])
            b = bytearray(b" ".join(toks) + (b"\r\n" + parts[1] if len(parts) > 1 else b""))
    elif m == 4:
        b = bytearray(rng.randbytes(rng.randint(1, 3000)))
    elif m == 5:
        b = bytearray(bytes(b).replace(b"\r\n", rng.choice([b"\n", b"\r", b"\r\r\n", b" \r\n"])))
    elif m == 6 and b:
        for _ in range(rng.randint(1, 3)):
            b.insert(rng.randrange(len(b) + 1), rng.choice([0, 0x80, 0xFF, 0x20, 0x09, 0x0A]))
    elif m == 7:
        b = b + b[:rng.randrange(len(b) + 1)]
    else:
        b = bytearray(bytes(b).replace(b" ", b"  ", 1))
    return bytes(b)


def mutate_binary(rng, req):
    b = bytearray(req)
    m = rng.randrange(10)
    if m == 0:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif m == 1:
        del b[rng.randrange(len(b)):]
    elif m == 2:  # body length far beyond what follows
        struct.pack_into(">I", b, 8, rng.choice([0xFFFFFFFF, 2**31, rng.randrange(2**20, 2**31)]))
    elif m == 3:  # body shorter than key + extras
        kl, el = struct.unpack_from(">H", b, 2)[0], b[4]
        struct.pack_into(">I", b, 8, max(0, kl + el - rng.randint(1, 5)))
    elif m == 4:  # key over 250 bytes
        k = b"k" * rng.randint(251, 1000)
        b = bytearray(breq(b[1], k, bytes(b[24:24 + b[4]])))
    elif m == 5:  # wrong extras length
        b[4] = rng.choice([0, 1, 3, 8, 20, 255])
    elif m == 6:
        b[0] = rng.choice([0x81, 0x00, 0x7F, rng.randrange(256)])
    elif m == 7:
        b[5] = rng.randrange(1, 256)  # data type
    elif m == 8:
        b += rng.randbytes(rng.randint(1, 200))
    else:
        struct.pack_into(">H", b, 2, rng.randrange(65536))  # key length
    return bytes(b)


def sanitize(buf, tail):
    """No flush_all, text or binary, can reach rend: break any "flush" (any
    case) and any 0x80 0x08 / 0x80 0x18 pair, also across sends (`tail` is
    the end of what was sent before). Only bytes of `buf` are changed."""
    t = len(tail)
    b = bytearray(tail + buf)
    low = bytes(b).lower()
    i = low.find(b"flush")
    while i >= 0:
        b[i + 4] = ord("x")
        i = low.find(b"flush", i + 1)
    for pat in (b"\x80\x08", b"\x80\x18"):
        i = bytes(b).find(pat)
        while i >= 0:
            b[i + 1] = 0x0A
            i = bytes(b).find(pat, i + 1)
    return bytes(b[t:])


class Fuzzer:
    def __init__(self, a):
        self.a = a
        self.c = {"sessions": 0, "requests": 0, "mutated": 0, "bytes": 0, "server_closes": 0,
                  "connect_failures": 0, "panic_replies": 0, "server_errors": 0,
                  "client_errors": 0, "errors": 0, "replies_bytes": 0}
        self.pacer = Pacer(a.rate)
        self.logged = 0

    async def drain(self, r, wait, s):
        """Read what arrives within `wait` s; False once rend closed."""
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return True
            try:
                data = await asyncio.wait_for(r.read(1 << 16), left)
            except asyncio.TimeoutError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self.c["replies_bytes"] += len(data)
            if b"panic" in (s["tail"] + data).lower():
                s["panic"] = True
            for kind, pat in (("server_errors", b"SERVER_ERROR"), ("client_errors", b"CLIENT_ERROR"),
                              ("errors", b"\nERROR\r\n")):
                self.c[kind] += (s["tail"][-1:] + data).count(pat) if kind == "errors" else data.count(pat)
            s["tail"] = data[-8:]

    async def session(self, sseed):
        a = self.a
        rng = random.Random(sseed)
        binary = rng.random() < 0.4
        n = rng.randint(1, 60)
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(HOST, a.port), 5)
        except (OSError, asyncio.TimeoutError):
            self.c["connect_failures"] += 1
            await asyncio.sleep(0.2)
            return
        self.c["sessions"] += 1
        s = {"tail": b"\n", "panic": False}
        tail = b""
        closed = False
        for _ in range(n):
            await self.pacer.wait()
            req = gen_binary(rng) if binary else gen_text(rng)
            if rng.random() < a.mutate:
                self.c["mutated"] += 1
                req = mutate_binary(rng, req) if binary else mutate_text(rng, req)
            req = sanitize(req, tail)
            tail = (tail + req)[-8:]
            try:
                w.write(req)
                await asyncio.wait_for(w.drain(), 5)
            except (OSError, asyncio.TimeoutError):
                closed = True
                break
            self.c["requests"] += 1
            self.c["bytes"] += len(req)
            if not await self.drain(r, 0.002, s):
                closed = True
                break
        if not closed:
            closed = not await self.drain(r, 0.1, s)
        if closed:
            self.c["server_closes"] += 1
        if s["panic"]:
            self.c["panic_replies"] += 1
            log("reply mentioning panic in session %d (replay: soak.py fuzz --replay %d --port PORT)" % (sseed, sseed))
        if rng.random() < 0.5:
            try:
                w.transport.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        w.transport.abort() if rng.random() < 0.5 else w.close()

    async def conn_loop(self, i, deadline):
        rng = random.Random(self.a.seed * 1_000_003 + i)
        while time.monotonic() < deadline and not self.stop.is_set():
            await self.session(rng.randrange(2**48))

    async def status(self):
        while True:
            write_status(self.a.status, self.c)
            await asyncio.sleep(1)

    async def run(self):
        a = self.a
        loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        if a.replay is not None:
            await self.session(a.replay)
            print(" ".join("%s=%d" % kv for kv in self.c.items()))
            return 1 if self.c["panic_replies"] else 0
        st = asyncio.create_task(self.status())
        deadline = time.monotonic() + a.duration
        tasks = [asyncio.create_task(self.conn_loop(i, deadline)) for i in range(a.conns)]
        await asyncio.wait(tasks, timeout=a.duration + 30)
        for t in tasks:
            t.cancel()
        st.cancel()
        write_status(a.status, self.c)
        print(" ".join("%s=%d" % kv for kv in self.c.items()))
        return 1 if self.c["panic_replies"] else 0


# ---------------------------------------------------------------- resets

def resets(a):
    rng = random.Random(a.seed)
    socks, failed = [], 0
    for _ in range(a.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.settimeout(3)
        try:
            s.connect((HOST, a.port))
            c = rng.randrange(4)
            k = b"rst:%d" % rng.randrange(1000)
            if c == 0:
                req = b"set %s 0 0 %d\r\n%s\r\n" % (k, 4000, b"r" * 4000)
            elif c == 1:
                req = b"get " + b" ".join(b"rst:%d" % i for i in range(50)) + b"\r\n"
            elif c == 2:
                req = breq(0x01, k, struct.pack(">II", 0, 0), b"r" * 3000)
            else:
                req = breq(0x00, k)
            s.sendall(req[:len(req) // 2])
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    time.sleep(0.3)
    for s in socks:
        s.close()  # SO_LINGER 0: RST
    print("resets: %d connected, sent half a request and reset; %d failed to connect" % (len(socks), failed))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--port", type=int, required=True)
    v.add_argument("--keys", type=int, default=20000)
    v.add_argument("--writers", type=int, default=4)
    v.add_argument("--readers", type=int, default=4)
    v.add_argument("--rate", type=float, default=1000, help="requests/s in all (0: unpaced)")
    v.add_argument("--duration", type=float, required=True)
    v.add_argument("--timeout", type=float, default=15)
    v.add_argument("--seed", type=int, default=1)
    v.add_argument("--status")
    f = sub.add_parser("fuzz")
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--conns", type=int, default=4)
    f.add_argument("--rate", type=float, default=200, help="requests/s in all")
    f.add_argument("--mutate", type=float, default=0.5, help="share of requests mutated")
    f.add_argument("--duration", type=float, default=60)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--replay", type=int, help="send the one session of this seed")
    f.add_argument("--status")
    r = sub.add_parser("resets")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--count", type=int, default=500)
    r.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if a.mode == "verify":
        return asyncio.run(Verifier(a).run())
    if a.mode == "fuzz":
        return asyncio.run(Fuzzer(a).run())
    return resets(a)


if __name__ == "__main__":
    sys.exit(main())
