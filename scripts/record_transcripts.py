#!/usr/bin/env python3
"""Record the golden replies of fixtures/transcripts/*.txt from memcached.

Each transcript lists requests (`> line`, sent with CRLF appended; `>x hex`,
raw bytes) and, after each, the replies memcached gave (`< line`, a CRLF-ended
line; `<x hex`, raw bytes). This script keeps the comments and requests of
every file given (default: all), starts a fresh memcached for each file
(memcached -l 127.0.0.1 -p PORT -U 0, defaults otherwise; -u root as root),
sends the requests one at a time, waits until memcached has been quiet for
QUIET seconds, and writes what came back under the request.

    python3 scripts/record_transcripts.py [fixtures/transcripts/x.txt ...]
"""
import glob
import os
import socket
import subprocess
import sys
import time

QUIET = 0.25


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_quiet(sock):
    sock.settimeout(QUIET)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return out, False
        if not chunk:
            return out, True
        out += chunk


def reply_lines(data, binary):
    if binary:
        return ["<x " + data.hex(" ")] if data else []
    assert data.endswith(b"\r\n") or not data, data
    return ["< " + l.decode("latin-1") if l else "<"
            for l in data[:-2].split(b"\r\n")] if data else []


def record(path):
    port = free_port()
    cmd = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    mc = subprocess.Popen(cmd)
    try:
        for _ in range(200):
            try:
                sock = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.025)
        version = subprocess.run(["memcached", "-V"], capture_output=True,
                                 text=True).stdout.strip()
        out = []
        for line in open(path, encoding="latin-1").read().splitlines():
            if line.startswith("<") or line.startswith("# recorded from"):
                continue
            out.append(line)
            if line.startswith(">x"):
                sock.sendall(bytes.fromhex(line[2:]))
                data, closed = read_quiet(sock)
                out += reply_lines(data, True)
            elif line.startswith(">"):
                sock.sendall(line[2:].encode("latin-1") + b"\r\n")
                data, closed = read_quiet(sock)
                out += reply_lines(data, False)
            else:
                continue
            if closed:
                sys.exit(f"{path}: memcached closed the connection after {line!r}")
        out.insert(0, f"# recorded from {version} by scripts/record_transcripts.py")
        with open(path, "w", encoding="latin-1") as f:
            f.write("\n".join(out) + "\n")
    finally:
        mc.kill()
        mc.wait()


def main():
    paths = sys.argv[1:] or sorted(glob.glob(os.path.join(
        os.path.dirname(__file__), "..", "fixtures", "transcripts", "*.txt")))
    for p in paths:
        record(p)
        print("recorded", p)


if __name__ == "__main__":
    main()
