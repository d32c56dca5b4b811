#!/usr/bin/env python3
"""Time from a real OOM kill to the webhook page: daytwo next to Prometheus + Alertmanager.

Usage (as root, after `cargo build --release`):
    python3 bench/oom_to_page.py [--runs 5] [--bin target/release/daytwo] [--no-peer]

For each run it creates a memory cgroup limited to 64 MiB, lets python3 allocate 256 MiB in
it, and measures from the moment the killed process is reaped to the moment a local HTTP
receiver gets daytwo's `trigger` webhook (and, from the kernel's own timestamp of the kill as
reported in the signal).

The peer, measured on the same kills in the same run: Debian's prometheus-node-exporter
(`node_vmstat_oom_kill`), prometheus scraping it every 1 s and evaluating
`changes(node_vmstat_oom_kill[5s]) > 0` every 1 s, and prometheus-alertmanager with
group_wait 0s posting to the same receiver. That is the fastest such a stack can be tuned;
it still cannot say which cgroup or process. Runs are 12 s apart so the peer's alert resolves
in between and fires anew.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, threading, time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

arrivals = {}
peer_arrivals = []   # monotonic times of Alertmanager "firing" posts
lock = threading.Condition()

class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        now_wall, now_mono = time.time(), time.monotonic()
        self.send_response(200); self.end_headers()
        try:
            msg = json.loads(body)
        except ValueError:
            return
        if self.path == "/am":
            if msg.get("status") == "firing":
                with lock:
                    peer_arrivals.append(now_mono)
                    lock.notify_all()
            return
        if msg.get("event") != "trigger":
            return
        for rc in msg["incident"]["root_causes"][:1]:
            with lock:
                arrivals[rc["entity"]["name"]] = (now_wall, now_mono, msg["incident"])
                lock.notify_all()
    def log_message(self, *a):
        pass

def memcg_root():
    if os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        return "/sys/fs/cgroup/memory", False
    return "/sys/fs/cgroup", True

def free_port():
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

PEER_PORTS = {}

def start_peer(tmp, am_hook):
    for name in ("node_exporter", "prometheus", "alertmanager"):
        PEER_PORTS[name] = free_port()
    ne, pr, am = PEER_PORTS["node_exporter"], PEER_PORTS["prometheus"], PEER_PORTS["alertmanager"]
    open(os.path.join(tmp, "rules.yml"), "w").write(
        "groups:\n- name: oom\n  interval: 1s\n  rules:\n  - alert: OOMKill\n"
        "    expr: changes(node_vmstat_oom_kill[5s]) > 0\n")
    open(os.path.join(tmp, "prometheus.yml"), "w").write(
        f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n"
        f"rule_files: [{os.path.join(tmp, 'rules.yml')}]\n"
        f"alerting: {{alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{am}']}}]}}]}}\n"
        f"scrape_configs: [{{job_name: node, static_configs: [{{targets: ['127.0.0.1:{ne}']}}]}}]\n")
    open(os.path.join(tmp, "alertmanager.yml"), "w").write(
        f"route: {{receiver: hook, group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}\n"
        f"receivers: [{{name: hook, webhook_configs: [{{url: '{am_hook}', send_resolved: false}}]}}]\n")
    out = open(os.path.join(tmp, "peer.log"), "w")
    return [
        subprocess.Popen(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ne}"], stdout=out, stderr=out),
        subprocess.Popen(["prometheus-alertmanager", f"--config.file={tmp}/alertmanager.yml", f"--storage.path={tmp}/am",
                          f"--web.listen-address=127.0.0.1:{am}", "--cluster.listen-address="], stdout=out, stderr=out),
        subprocess.Popen(["prometheus", f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/prom",
                          f"--web.listen-address=127.0.0.1:{pr}"], stdout=out, stderr=out),
    ]

def wait_peer_ready(tmp):
    import urllib.request
    deadline = time.time() + 60
    url = f"http://127.0.0.1:{PEER_PORTS['prometheus']}/api/v1/query?query=node_vmstat_oom_kill"
    while time.time() < deadline:
        try:
            if '"value"' in urllib.request.urlopen(url, timeout=2).read().decode():
                time.sleep(2)  # a few samples, so changes() has a baseline
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("Prometheus never scraped node_exporter:\n" + open(os.path.join(tmp, "peer.log")).read()[-3000:])

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default="target/release/daytwo")
    ap.add_argument("--no-peer", action="store_true", help="skip Prometheus + Alertmanager")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (memory cgroups and /dev/kmsg)")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    tmp = tempfile.mkdtemp()
    log = open(os.path.join(tmp, "daytwo.log"), "w+")
    peers = [] if a.no_peer else start_peer(tmp, f"http://127.0.0.1:{srv.server_address[1]}/am")
    proc = subprocess.Popen([a.bin, "up", "--data-dir", os.path.join(tmp, "data"), "--http-addr", "127.0.0.1:0",
                             "--otlp-addr", "127.0.0.1:0", "--webhook", url], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        proc.stdout.readline()
        deadline = time.time() + 20
        while "Agent started." not in open(log.name).read():
            if time.time() > deadline:
                sys.exit("agent did not start:\n" + open(log.name).read())
            time.sleep(0.05)
        root, v2 = memcg_root()
        from_reap, from_kernel, peer = [], [], []
        if peers:
            wait_peer_ready(tmp)
        for i in range(a.runs):
            name = f"daytwo-bench-{os.getpid()}-{i}"
            d = os.path.join(root, name)
            os.mkdir(d)
            open(os.path.join(d, "memory.max" if v2 else "memory.limit_in_bytes"), "w").write(str(64 << 20))
            child = subprocess.Popen(["python3", "-c", "a = bytearray(256 << 20)"],
                                     preexec_fn=lambda: open(os.path.join(d, "cgroup.procs"), "w").write(str(os.getpid())))
            child.wait()
            reaped = time.monotonic()
            with lock:
                ok = lock.wait_for(lambda: "/" + name in arrivals, timeout=30)
            if not ok:
                sys.exit(f"no page for /{name} within 30 s:\n" + open(log.name).read()[-4000:])
            wall, mono, inc = arrivals["/" + name]
            kernel_t = datetime.fromisoformat(inc["opened_at"].replace("Z", "+00:00")).timestamp()
            from_reap.append(mono - reaped)
            from_kernel.append(wall - kernel_t)
            line = (f"run {i + 1}: daytwo page {from_reap[-1] * 1000:7.1f} ms after the victim was reaped, "
                    f"{from_kernel[-1] * 1000:7.1f} ms after the kernel's kill timestamp")
            if peers:
                with lock:
                    ok = lock.wait_for(lambda: any(t > reaped for t in peer_arrivals), timeout=60)
                if ok:
                    peer.append(min(t for t in peer_arrivals if t > reaped) - reaped)
                    line += f"; Prometheus+Alertmanager {peer[-1] * 1000:7.1f} ms"
                else:
                    line += "; Prometheus+Alertmanager: no page within 60 s"
            print(line, flush=True)
            for _ in range(50):
                try:
                    os.rmdir(d); break
                except OSError:
                    time.sleep(0.1)
            if peers and i + 1 < a.runs:
                time.sleep(12)
        print()
        print(f"daytwo kill -> webhook (kernel's kill timestamp): median {statistics.median(from_kernel) * 1000:.1f} ms, max {max(from_kernel) * 1000:.1f} ms over {a.runs} runs")
        print(f"daytwo webhook vs the parent reaping the victim:  median {statistics.median(from_reap) * 1000:.1f} ms, max {max(from_reap) * 1000:.1f} ms (negative: the page arrived first)")
        if peer:
            print(f"peer, same kills, from the reaping (so an underestimate by the figure above):")
        if peer:
            print(f"Prometheus + Alertmanager (1 s scrape, 1 s eval, group_wait 0s): median {statistics.median(peer) * 1000:.1f} ms, max {max(peer) * 1000:.1f} ms over {len(peer)} runs")
        print("goal: daytwo < 2000 ms")
    finally:
        for p in peers:
            p.terminate()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main()
