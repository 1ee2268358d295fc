#!/usr/bin/env python3
"""The agent side of bench_egress.py: stands in for `claude` (DISPATCH_CLAUDE_BIN), does the load its task names
through the proxy the runner gave it (HTTP_PROXY), writes one JSON line of measurements to stderr, then answers as
the fake claude does. Also run by the benchmark itself, outside any sandbox and without a proxy: the baseline.

Task tokens (the fake agent's own `fake:` directives are passed on):
  bench:download=URL            GET URL, read to the end in 1 MiB reads: bytes and seconds
  bench:latency=N:URL           N sequential GETs of URL, each on a new connection: the seconds of each
  bench:connections=N:W:HOST:PORT  N CONNECTs to HOST:PORT, at most W open at once, each held until all W are open
"""
import asyncio
import json
import os
import socket
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.realpath(__file__))


def proxy():
    value = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")
    if not value:
        return None
    parsed = urllib.parse.urlsplit(value)
    return parsed.hostname, parsed.port


def get(url, via, sink=None):
    """One GET on a new connection (through `via` when set): the body's size."""
    parsed = urllib.parse.urlsplit(url)
    target = (via or (parsed.hostname, parsed.port or 80))
    with socket.create_connection(target, timeout=60) as connection:
        path = url if via else (parsed.path or "/")
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nConnection: close\r\n\r\n".encode())
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        total = 0
        while True:
            count = connection.recv_into(view)
            if count == 0:
                return total
            total += count


def download(url, via):
    start = time.perf_counter()
    size = get(url, via)
    return {"bytes": size, "seconds": time.perf_counter() - start}


def latency(count, url, via):
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        get(url, via)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds}


async def connections(count, width, host, port, via):
    """`count` CONNECTs through `via`, `width` open at once: how many were answered 200, how many otherwise."""
    answered = {"200": 0, "other": 0, "failed": 0}

    async def one(release):
        try:
            reader, writer = await asyncio.open_connection(*via)
            writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            answered["200" if head.startswith(b"HTTP/1.1 200") else "other"] += 1
            await release.wait()
            writer.close()
        except Exception:  # noqa: BLE001 - a refused or reset connection is counted, not fatal
            answered["failed"] += 1

    done = 0
    while done < count:
        release = asyncio.Event()
        wave = [asyncio.create_task(one(release)) for _ in range(min(width, count - done))]
        await asyncio.sleep(0.2)
        release.set()
        await asyncio.gather(*wave)
        done += len(wave)
    return answered


def main():
    words = " ".join(sys.argv[1:]).split()
    via = proxy()
    report = {}
    for word in words:
        key, _, value = word.partition("=")
        if key == "bench:download":
            report["download"] = download(value, via)
        elif key == "bench:latency":
            count, _, url = value.partition(":")
            report["latency"] = latency(int(count), url, via)
        elif key == "bench:connections":
            count, width, host, port = value.split(":")
            report["connections"] = asyncio.run(connections(int(count), int(width), host, int(port), via))
    if report:
        sys.stderr.write("bench " + json.dumps(report) + "\n")
        sys.stderr.flush()
    if os.environ.get("EGRESS_LOAD_BASELINE"):
        return
    os.environ["FAKE_AGENT_TOOL"] = "claude"
    os.execv(sys.executable, [sys.executable, os.path.join(HERE, "fake_agent.py")] + sys.argv[1:])


if __name__ == "__main__":
    main()
