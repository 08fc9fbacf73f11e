#!/usr/bin/env python3
"""Soak a running StrapVitService on loopback with mixed traffic and report errors, latency and RSS drift.

    python3 tools/soak/soak.py --url http://127.0.0.1:5099 --pid $(pgrep -nf StrapVit.Api.dll) --duration 600 --concurrency 32

Traffic, by weight: classify with each defense mode (multipart and raw bodies), FGSM, PGD, DeepFool, patch
attacks, saliency, and hostile uploads (cut-off images, header bombs, broken multipart, two files). Bounded: loopback
URLs only, at most --duration seconds (1800 max), --concurrency workers (64 max) and --max-requests requests.
Standard library only. Counts: responses >= 500 and transport errors are failures; a 4xx without an
application/problem+json body is a failure too; 429 (attack slots, rate limits) is counted, not failed. RSS is read
from /proc/PID/status every 5 s; drift compares the last minute's mean with the mean of the minute after warm-up.
"""
import argparse
import http.client
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from urllib.parse import urlparse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = ["trouser.png", "ankle-boot.png", "bag.png", "sneaker.png", "pullover.png"]


def multipart(files, fields=(), boundary=None):
    boundary = boundary or uuid.uuid4().hex
    out = bytearray()
    for name, value in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, data, ctype in files:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="x.png"\r\n'
                f'Content-Type: {ctype}\r\n\r\n').encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def png_bomb_header():
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


def build_requests():
    images = [open(os.path.join(ROOT, "samples", s), "rb").read() for s in SAMPLES]
    img = lambda: random.choice(images)  # noqa: E731

    def form(fields=()):
        return multipart([("image", img(), "image/png")], fields)

    kinds = []

    def add(name, weight, make):
        kinds.append((name, weight, make))

    for mode in ("off", "detect", "mitigate"):
        add(f"classify-{mode}", 10, lambda m=mode: ("POST", f"/v1/classify?defense={m}", *form()))
        add(f"classify-{mode}-raw", 5, lambda m=mode: ("POST", f"/v1/classify?defense={m}", img(), "image/png"))
    add("fgsm", 3, lambda: ("POST", "/v1/attacks/fgsm", *form([("epsilon", "0.03")])))
    add("pgd", 2, lambda: ("POST", "/v1/attacks/pgd", *form([("steps", "10")])))
    add("deepfool", 2, lambda: ("POST", "/v1/attacks/deepfool", *form()))
    add("patch", 1, lambda: ("POST", "/v1/attacks/patch", *form([("steps", "20")])))
    add("saliency", 3, lambda: ("POST", "/v1/explain/saliency", *form()))
    add("hostile-cut-png", 2, lambda: ("POST", "/v1/classify", img()[: random.randint(0, 200)], "image/png"))
    add("hostile-bomb", 1, lambda: ("POST", "/v1/classify", *multipart([("image", png_bomb_header(), "image/png")])))
    add("hostile-two-files", 1, lambda: ("POST", "/v1/classify", *multipart([("image", img(), "image/png")] * 2)))
    add("hostile-cut-form", 1, lambda: (lambda b, t: ("POST", "/v1/classify", b[: len(b) // 2], t))(*form()))
    add("hostile-bad-boundary", 1, lambda: ("POST", "/v1/classify", form()[0], "multipart/form-data; boundary=nope"))
    return kinds


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = {}
        self.status = {}
        self.failures = []
        self.count = 0

    def add(self, kind, status, seconds, failure=None):
        with self.lock:
            self.count += 1
            self.latency.setdefault(kind, []).append(seconds)
            self.status[status] = self.status.get(status, 0) + 1
            if failure and len(self.failures) < 50:
                self.failures.append(f"{kind}: {failure}")
            if failure:
                self.status["failures"] = self.status.get("failures", 0) + 1


def worker(host, port, headers, kinds, deadline, stats, max_requests):
    weights = [w for _, w, _ in kinds]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    while time.monotonic() < deadline and stats.count < max_requests:
        name, _, make = random.choices(kinds, weights)[0]
        method, path, body, ctype = make()
        started = time.monotonic()
        try:
            conn.request(method, path, body=body, headers={**headers, "Content-Type": ctype})
            response = conn.getresponse()
            data = response.read()
            status = response.status
            failure = None
            if status >= 500:
                failure = f"{status} {data[:200]!r}"
            elif status >= 400 and response.getheader("Content-Type", "").split(";")[0] != "application/problem+json":
                failure = f"{status} without problem+json"
            stats.add(name, status, time.monotonic() - started, failure)
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
        except (OSError, http.client.HTTPException) as ex:
            stats.add(name, "transport", time.monotonic() - started, repr(ex))
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:5080")
    ap.add_argument("--pid", type=int, help="service process id, for RSS")
    ap.add_argument("--duration", type=int, default=600)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-requests", type=int, default=5_000_000)
    ap.add_argument("--api-key", default=os.environ.get("STRAPVIT_API_KEY"))
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--json", help="write the report here too")
    args = ap.parse_args()

    url = urlparse(args.url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("soak.py only talks to loopback (127.0.0.1, localhost, ::1)")
    if not (1 <= args.duration <= 1800 and 1 <= args.concurrency <= 64 and args.warmup < args.duration):
        sys.exit("bounds: 1 <= duration <= 1800 s, 1 <= concurrency <= 64, warmup < duration")
    random.seed(args.seed)
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    kinds = build_requests()
    stats = Stats()
    start = time.monotonic()
    deadline = start + args.duration
    threads = [threading.Thread(target=worker, args=(url.hostname, url.port or 80, headers, kinds, deadline, stats, args.max_requests), daemon=True)
               for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    rss = []
    while any(t.is_alive() for t in threads):
        if args.pid:
            rss.append((time.monotonic() - start, rss_kib(args.pid)))
        time.sleep(5)
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start

    every = [v for vs in stats.latency.values() for v in vs]
    report = {
        "requests": stats.count,
        "seconds": round(elapsed, 1),
        "rps": round(stats.count / elapsed, 1),
        "status": {str(k): v for k, v in sorted(stats.status.items(), key=lambda kv: str(kv[0]))},
        "errors_5xx": sum(v for k, v in stats.status.items() if isinstance(k, int) and k >= 500),
        "failures": stats.status.get("failures", 0),
        "p50_ms": round(1000 * percentile(every, 50), 2) if every else None,
        "p99_ms": round(1000 * percentile(every, 99), 2) if every else None,
        "by_kind": {k: {"n": len(v), "p50_ms": round(1000 * statistics.median(v), 2), "p99_ms": round(1000 * percentile(v, 99), 2)}
                    for k, v in sorted(stats.latency.items())},
        "first_failures": stats.failures[:10],
    }
    if rss:
        after_warmup = [r for t, r in rss if args.warmup <= t < args.warmup + 60] or [rss[0][1]]
        last = [r for t, r in rss if t >= elapsed - 60] or [rss[-1][1]]
        report["rss_mib"] = {"start": round(rss[0][1] / 1024, 1), "after_warmup": round(statistics.mean(after_warmup) / 1024, 1),
                             "end": round(statistics.mean(last) / 1024, 1), "max": round(max(r for _, r in rss) / 1024, 1)}
        report["rss_drift_percent"] = round(100 * (statistics.mean(last) - statistics.mean(after_warmup)) / statistics.mean(after_warmup), 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    sys.exit(1 if report["failures"] else 0)


if __name__ == "__main__":
    main()
