#!/usr/bin/env python3
"""Fault cases against a locally built StrapVitService (loopback only, each bounded to a minute or so).

    dotnet build src/StrapVit.Api -c Release
    python3 tools/soak/faults.py --dll src/StrapVit.Api/bin/Release/net10.0/linux-x64/StrapVit.Api.dll

Cases: model directory missing, model.onnx missing, model.onnx corrupt (each: exit code 1 and one line on stderr),
an unwritable cache directory, a client disconnecting mid-upload and mid-attack (no 5xx, the attack counted as
canceled, the service still ready), and SIGTERM while attacks run (they finish with 200, then exit code 0).
Standard library only; prints one JSON object per case.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT = 5097


def env(**extra):
    e = dict(os.environ, ASPNETCORE_URLS=f"http://127.0.0.1:{PORT}", ASPNETCORE_ENVIRONMENT="Production",
             Inference__Device="Cpu", Serilog__MinimumLevel__Default="Warning")
    e.update(extra)
    return e


def start(dll, **extra):
    return subprocess.Popen(["dotnet", dll], env=env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if request("GET", "/healthz/ready")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def request(method, path, body=None, ctype=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def form(fields=(), image="bag.png"):
    b = uuid.uuid4().hex
    data = open(os.path.join(ROOT, "samples", image), "rb").read()
    out = b"".join(f'--{b}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n'.encode() for n, v in fields)
    out += f'--{b}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'.encode() + data
    return out + f"\r\n--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def metric(name, labels):
    text = request("GET", "/metrics")[1].decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def startup_failure(dll, name, **extra):
    proc = start(dll, **extra)
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"case": name, "ok": False, "reason": "did not exit"}
    lines = [l for l in err.splitlines() if l.strip()]
    return {"case": name, "exit": proc.returncode, "stderr": lines, "ok": proc.returncode == 1 and len(lines) == 1}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dll", default=os.path.join(ROOT, "src/StrapVit.Api/bin/Release/net10.0/linux-x64/StrapVit.Api.dll"))
    args = ap.parse_args()
    dll = os.path.abspath(args.dll)
    work = tempfile.mkdtemp(prefix="strapvit-faults-")
    results = []
    try:
        model = os.path.join(ROOT, "models", "fashion-vit-tiny")
        results.append(startup_failure(dll, "model directory missing", Model__Path=os.path.join(work, "nothing")))
        no_onnx = shutil.copytree(model, os.path.join(work, "no-onnx"))
        os.remove(os.path.join(no_onnx, "model.onnx"))
        results.append(startup_failure(dll, "model.onnx missing", Model__Path=no_onnx))
        corrupt = shutil.copytree(model, os.path.join(work, "corrupt"))
        with open(os.path.join(corrupt, "model.onnx"), "wb") as f:
            f.write(os.urandom(300_000))
        results.append(startup_failure(dll, "model.onnx corrupt", Model__Path=corrupt, Model__CacheDirectory=os.path.join(work, "c1")))

        # A cache directory that cannot be created or written (under /proc, even for root).
        proc = start(dll, Model__CacheDirectory="/proc/strapvit-cache")
        ready = wait_ready(proc)
        info = json.loads(request("GET", "/v1/model")[1]) if ready else {}
        classify = request("POST", "/v1/classify", *form())[0] if ready else None
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        results.append({"case": "unwritable cache directory", "ready": ready, "classify": classify,
                        "gradients": info.get("gradients"), "exit": proc.returncode})

        proc = start(dll, Model__CacheDirectory=os.path.join(work, "c2"))
        wait_ready(proc)
        before_5xx = metric("strapvit_requests_total", {"outcome": "server_error"})
        # Mid-upload: a body announced as 200 kB, 1 kB sent, then the connection closes.
        s = socket.create_connection(("127.0.0.1", PORT))
        s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 200000\r\n\r\n" + b"\x89PNG" * 256)
        time.sleep(0.3)
        s.close()
        # Mid-attack: a long PGD, the client gone after 0.5 s.
        body, ctype = form([("steps", "1000"), ("restarts", "10")])
        s = socket.create_connection(("127.0.0.1", PORT))
        s.sendall(f"POST /v1/attacks/pgd HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.5)
        s.close()
        time.sleep(2)
        results.append({"case": "client disconnects mid-upload and mid-attack",
                        "server_errors": metric("strapvit_requests_total", {"outcome": "server_error"}) - before_5xx,
                        "attacks_canceled": metric("strapvit_attacks_total", {"attack": "pgd", "outcome": "canceled"}),
                        "ready_after": request("GET", "/healthz/ready")[0],
                        "classify_after": request("POST", "/v1/classify", *form())[0]})

        # SIGTERM while 6 PGD attacks run: each in-flight request finishes, then the process exits 0.
        statuses = []
        def attack():
            try:
                statuses.append(request("POST", "/v1/attacks/pgd", *form([("steps", "300")]), timeout=120)[0])
            except OSError as ex:
                statuses.append(repr(ex))
        threads = [threading.Thread(target=attack) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(120)
        proc.wait(60)
        results.append({"case": "SIGTERM under load", "in_flight_statuses": statuses, "exit": proc.returncode,
                        "exit_after_s": round(time.monotonic() - sent, 2)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
