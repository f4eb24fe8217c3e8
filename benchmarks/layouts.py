#!/usr/bin/env python3
"""Worker layouts against the monolith, on one host, under the same client load.

For each layout, one after the other in one run: deploy it with playbooks/site.yml into the
local systemd container ``synapse-bench`` (scripts/deploy-local.sh; published on
127.0.0.1:15080 and :15448 only), wait until every process is healthy, then drive a client
load through the proxy and ramp it until the delivered throughput stops growing:

* every user long-polls /sync (inline filter, timeline limit 500), in rooms of 5 members;
* a growing number of them send a text message every ``--interval`` seconds (closed loop:
  the next one leaves when the previous one was answered and the interval is over);
* a share of the users reads room history (/messages) and another uploads and downloads
  media, at a constant rate throughout.

A message counts as delivered when every other member of its room has seen it in a /sync
response; its send-to-delivery latency is taken per recipient, from the start of the send
request. After the ramp, sending stops and every message sent must arrive (``undelivered``).
CPU and memory of every Synapse process (and PostgreSQL, Redis, HAProxy, journald) are read
from /proc inside the container at each step's edges. The load client runs on this machine
too; its own CPU time is printed.

A benchmark, not a test: it asserts nothing, prints a table and writes a JSON file.

    benchmarks/layouts.sh [--layouts monolith,auto,specialised] [--step 20] [--users 60]

See docs/benchmarks.md for the method and the results.
"""
import argparse
import asyncio
import hashlib
import hmac
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import aiohttp

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONTAINER = "synapse-bench"
CLIENT_PORT = 15080
FEDERATION_PORT = 15448
BASE_URL = "http://127.0.0.1:%d" % CLIENT_PORT

# Layouts by name: the extra variables given to playbooks/site.yml (they replace the
# inventory's synapse_workers). A --layouts item may also be NAME=JSON for any other wish.
LAYOUTS = {
    "monolith": {"synapse_workers": {}},
    "auto": {"synapse_workers": {}, "synapse_profile": "auto"},
    "small": {"synapse_workers": {}, "synapse_profile": "small"},
    "medium": {"synapse_workers": {}, "synapse_profile": "medium"},
    "large": {"synapse_workers": {}, "synapse_profile": "large"},
    # what guides written for big machines suggest: sync, event creation and persistence,
    # reads each in a process of their own
    "specialised": {"synapse_workers": {"synchrotron": 2, "event_creator": 1, "event_persister": 1,
                                        "client_reader": 1}},
}

_UNLIMITED = {"per_second": 100000, "burst_count": 100000}
# The same for every layout: rate limits off (the load is many messages from few users, which
# Synapse's defaults throttle to 0.2 msg/s per user), cheap password hashing for registration.
BENCH_VARS = {
    "synapse_extra_config": {
        "rc_message": _UNLIMITED,
        "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
        "rc_joins_per_room": _UNLIMITED,
        "rc_room_creation": _UNLIMITED,
        "rc_registration": _UNLIMITED,
        "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
        "rc_media_create": _UNLIMITED,
        "rc_presence": {"per_user": _UNLIMITED},
        "bcrypt_rounds": 4,
    },
}

# Runs inside the container (its python3): CPU ticks and memory of every process, by role.
SAMPLER = r"""
import json, os, re
groups = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        with open("/proc/%s/stat" % pid) as f:
            stat = f.read()
        pss = 0
        with open("/proc/%s/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
        with open("/proc/%s/status" % pid) as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        continue
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    if "synapse.app.homeserver" in cmd:
        name = "main"
    elif "synapse.app.generic_worker" in cmd:
        m = re.search(r"workers/([^/ ]+)\.yaml", cmd)
        name = m.group(1) if m else "worker?"
    elif comm.startswith("postgres"):
        name = "postgresql"
    elif comm.startswith("redis"):
        name = "redis"
    elif comm.startswith("haproxy"):
        name = "haproxy"
    elif comm.startswith("systemd-journal"):
        name = "journald"
    else:
        continue
    g = groups.setdefault(name, {"ticks": 0, "rss_kb": 0, "pss_kb": 0, "procs": 0})
    g["ticks"] += int(fields[11]) + int(fields[12])
    g["rss_kb"] += rss
    g["pss_kb"] += pss
    g["procs"] += 1
print(json.dumps({"hz": os.sysconf("SC_CLK_TCK"), "groups": groups}))
"""


def log(msg):
    print("==> %s" % msg, file=sys.stderr, flush=True)


def docker_exec(*argv, input_text=None, check=True):
    proc = subprocess.run(["docker", "exec", "-i", CONTAINER] + list(argv), input=input_text,
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode:
        raise RuntimeError("docker exec %s failed: %s" % (" ".join(argv), proc.stderr.strip()))
    return proc.stdout


def sample():
    return time.monotonic(), json.loads(docker_exec("python3", "-", input_text=SAMPLER))


def usage(before, after):
    """Per process group: CPU % of one core and memory (MB) between two samples."""
    (t0, a), (t1, b) = before, after
    hz, out = b["hz"], {}
    for name, g in b["groups"].items():
        ticks = g["ticks"] - a["groups"].get(name, {"ticks": g["ticks"]})["ticks"]
        out[name] = {"cpu_pct": round(100.0 * ticks / hz / (t1 - t0), 1), "rss_mb": round(g["rss_kb"] / 1024.0),
                     "pss_mb": round(g["pss_kb"] / 1024.0), "procs": g["procs"]}
    return out


# ------------------------------------------------------------------------------ deployment

def deploy(name, extra_vars, logdir):
    variables = dict(BENCH_VARS, **extra_vars)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, dir=logdir) as f:
        json.dump(variables, f)
    env = dict(os.environ, MATRIXOPS_CONTAINER=CONTAINER, MATRIXOPS_CLIENT_PORT=str(CLIENT_PORT),
               MATRIXOPS_FEDERATION_PORT=str(FEDERATION_PORT))
    path = os.path.join(logdir, "deploy-%s.log" % name)
    started = time.monotonic()
    with open(path, "w") as out:
        proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "deploy-local.sh"), "-e", "@" + f.name],
                              stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, timeout=3600)
    if proc.returncode:
        raise RuntimeError("deploying layout %s failed (exit %d); see %s" % (name, proc.returncode, path))
    record = json.loads(docker_exec("cat", "/etc/matrix-synapse/deployed.json"))
    plan = record["plan"]
    units = ["matrix-synapse.service"] + [w["unit"] for w in plan["workers"]]
    deadline = time.monotonic() + 180
    while True:
        states = docker_exec("systemctl", "is-active", *units, check=False).split()
        if all(s == "active" for s in states):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("layout %s: units not active after 180 s: %s" % (name, dict(zip(units, states))))
        time.sleep(2)
    return {"seconds": round(time.monotonic() - started), "workers": [w["name"] for w in plan["workers"]],
            "summary": plan.get("layout", {}).get("summary", []), "log": path}


# ------------------------------------------------------------------------------ the client load

class Stats(object):
    def __init__(self):
        self.sent = {}          # event_id -> (t_sent_start, t_answer, room_id, sender)
        self.seen = {}          # event_id -> {user: t}
        self.members = {}       # room_id -> set of user ids
        self.errors = {}        # "what status" -> count
        self.gaps = 0           # limited timelines (events a /sync skipped)
        self.reads = 0
        self.media = 0

    def error(self, what):
        self.errors[what] = self.errors.get(what, 0) + 1

    def complete_at(self, eid):
        """When every other member of the room had the event, or None."""
        t0, _, room, sender = self.sent[eid]
        seen = self.seen.get(eid, {})
        others = self.members[room] - {sender}
        if not others <= set(seen):
            return None
        return max(seen[u] for u in others)


class Load(object):
    def __init__(self, args, users, rooms):
        self.args, self.users, self.rooms = args, users, rooms
        self.stats = Stats()
        for room_id, members in rooms.items():
            self.stats.members[room_id] = set(u["user_id"] for u in members)
        self.active_senders = 0
        self.saturated = False   # the ramp ended on a plateau (not on its step or user limit)
        self.sending = True
        self.running = True
        self.session = None

    async def request(self, method, path, what, token, **kwargs):
        headers = {"Authorization": "Bearer %s" % token}
        try:
            async with self.session.request(method, BASE_URL + path, headers=headers, **kwargs) as resp:
                body = await resp.read()
                if resp.status != 200:
                    self.stats.error("%s %d" % (what, resp.status))
                    return None
                return json.loads(body) if resp.content_type == "application/json" else body
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.stats.error("%s %s" % (what, type(exc).__name__))
            return None

    async def sync_loop(self, user):
        flt = json.dumps({"room": {"timeline": {"limit": 500}}})
        since = user.get("since")
        while self.running:
            params = {"filter": flt, "timeout": "0" if since is None else "30000"}
            if since:
                params["since"] = since
            body = await self.request("GET", "/_matrix/client/v3/sync", "sync", user["token"], params=params,
                                      timeout=aiohttp.ClientTimeout(total=60))
            now = time.monotonic()
            if body is None:
                await asyncio.sleep(0.5)
                continue
            since = body.get("next_batch", since)
            for room in body.get("rooms", {}).get("join", {}).values():
                timeline = room.get("timeline", {})
                if timeline.get("limited") and user.get("since"):
                    self.stats.gaps += 1
                for ev in timeline.get("events", []):
                    if ev.get("type") == "m.room.message" and ev.get("content", {}).get("bench"):
                        self.stats.seen.setdefault(ev["event_id"], {}).setdefault(user["user_id"], now)
            user["since"] = since

    async def send_loop(self, index, user):
        room = user["room_id"]
        seq = 0
        while self.sending:
            if index >= self.active_senders:
                await asyncio.sleep(0.2)
                continue
            seq += 1
            t0 = time.monotonic()
            txn = "%s-%d" % (uuid.uuid4().hex[:8], seq)
            body = await self.request(
                "PUT", "/_matrix/client/v3/rooms/%s/send/m.room.message/%s" % (room, txn), "send", user["token"],
                json={"msgtype": "m.text", "body": "bench message %d from %s" % (seq, user["user_id"]), "bench": 1})
            t1 = time.monotonic()
            if body is not None:
                self.stats.sent[body["event_id"]] = (t0, t1, room, user["user_id"])
            await asyncio.sleep(max(0.0, self.args.interval - (t1 - t0)))

    async def reader_loop(self, user):
        while self.running:
            await asyncio.sleep(self.args.read_every * random.uniform(0.5, 1.5))
            body = await self.request("GET", "/_matrix/client/v3/rooms/%s/messages" % user["room_id"], "messages",
                                      user["token"], params={"dir": "b", "limit": "20"})
            if body is not None:
                self.stats.reads += 1

    async def media_loop(self, user):
        payload = os.urandom(self.args.media_kb * 1024)
        while self.running:
            await asyncio.sleep(self.args.media_every * random.uniform(0.5, 1.5))
            up = await self.upload(user, payload)
            if up is None:
                continue
            server, media_id = up["content_uri"][len("mxc://"):].split("/", 1)
            got = await self.request("GET", "/_matrix/client/v1/media/download/%s/%s" % (server, media_id),
                                     "download", user["token"])
            if got is not None:
                if got != payload:
                    self.stats.error("download mismatch")
                else:
                    self.stats.media += 1

    async def upload(self, user, payload):
        headers = {"Authorization": "Bearer %s" % user["token"], "Content-Type": "application/octet-stream"}
        try:
            async with self.session.post(BASE_URL + "/_matrix/media/v3/upload", data=payload, headers=headers,
                                         params={"filename": "bench.bin"}) as resp:
                body = await resp.read()
                if resp.status != 200:
                    self.stats.error("upload %d" % resp.status)
                    return None
                return json.loads(body)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.stats.error("upload %s" % type(exc).__name__)
            return None

    def window(self, t0, t1):
        """Sends answered and messages completely delivered between t0 and t1."""
        sent = sum(1 for (_, ta, _, _) in self.stats.sent.values() if t0 <= ta < t1)
        delivered = 0
        for eid in self.stats.sent:
            done = self.stats.complete_at(eid)
            if done is not None and t0 <= done < t1:
                delivered += 1
        return sent, delivered

    def latencies(self, t0, t1):
        """Per-recipient send-to-delivery latencies (ms) of the messages sent between t0 and t1."""
        out = []
        for eid, (ts, _, room, sender) in self.stats.sent.items():
            if t0 <= ts < t1:
                for user, t in self.stats.seen.get(eid, {}).items():
                    if user != sender:
                        out.append((t - ts) * 1000.0)
        return out

    async def run(self):
        args = self.args
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            self.session = session
            tasks = [asyncio.ensure_future(self.sync_loop(u)) for u in self.users]
            # senders: interleaved over the rooms, so that k senders spread over k rooms
            order = sorted(range(len(self.users)), key=lambda i: (i % 5, i // 5))
            tasks += [asyncio.ensure_future(self.send_loop(rank, self.users[i])) for rank, i in enumerate(order)]
            readers = self.users[::max(1, int(round(1 / args.read_share)))] if args.read_share > 0 else []
            media = self.users[2::max(1, int(round(1 / args.media_share)))] if args.media_share > 0 else []
            tasks += [asyncio.ensure_future(self.reader_loop(u)) for u in readers]
            tasks += [asyncio.ensure_future(self.media_loop(u)) for u in media]
            # every sync has its token before the clock starts
            while any(u.get("since") is None for u in self.users):
                await asyncio.sleep(0.2)
            # warm-up, not measured: caches of freshly started processes fill
            self.active_senders = args.start_senders
            await asyncio.sleep(args.warmup)
            steps = []
            senders = args.start_senders
            best = 0.0
            flat = 0
            while True:
                self.active_senders = min(senders, len(self.users))
                before = await asyncio.get_running_loop().run_in_executor(None, sample)
                cpu0 = time.process_time()
                t0 = time.monotonic()
                reads0, media0 = self.stats.reads, self.stats.media
                await asyncio.sleep(args.step)
                t1 = time.monotonic()
                cpu1 = time.process_time()
                after = await asyncio.get_running_loop().run_in_executor(None, sample)
                # deliveries of this step's last messages may land just after it: count a
                # message in the step where its delivery completed
                sent, delivered = self.window(t0, t1)
                step = {"senders": self.active_senders, "seconds": round(t1 - t0, 1),
                        "t0": t0, "t1": t1,
                        "sent_per_s": round(sent / (t1 - t0), 1), "delivered_per_s": round(delivered / (t1 - t0), 1),
                        "reads_per_s": round((self.stats.reads - reads0) / (t1 - t0), 1),
                        "media_per_s": round((self.stats.media - media0) / (t1 - t0), 2),
                        "client_cpu_pct": round(100.0 * (cpu1 - cpu0) / (t1 - t0), 1),
                        "processes": usage(before, after)}
                steps.append(step)
                log("  %3d senders: sent %6.1f/s delivered %6.1f/s" % (step["senders"], step["sent_per_s"],
                                                                       step["delivered_per_s"]))
                if step["delivered_per_s"] > best * (1 + args.plateau):
                    best, flat = step["delivered_per_s"], 0
                else:
                    flat += 1
                if flat >= 2:
                    self.saturated = True
                    break
                if self.active_senders >= len(self.users) or len(steps) >= args.max_steps:
                    break
                senders = int(math.ceil(senders * args.growth))
            # drain: stop sending, wait for every sent message to reach every member
            self.sending = False
            await asyncio.sleep(args.interval + 1)
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline:
                if all(self.stats.complete_at(e) is not None for e in self.stats.sent):
                    break
                await asyncio.sleep(0.5)
            self.running = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return steps


async def register_users(args, shared_secret, prefix):
    """Users by shared-secret registration (Synapse's admin API), rooms of 5 members."""
    users = []
    sem = asyncio.Semaphore(8)
    async with aiohttp.ClientSession() as session:
        async def one(i):
            localpart, password = "%s_%03d" % (prefix, i), uuid.uuid4().hex
            async with sem:
                async with session.get(BASE_URL + "/_synapse/admin/v1/register") as resp:
                    nonce = (await resp.json())["nonce"]
                mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
                mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(), b"notadmin"]))
                async with session.post(BASE_URL + "/_synapse/admin/v1/register", json={
                        "nonce": nonce, "username": localpart, "password": password, "admin": False,
                        "mac": mac.hexdigest()}) as resp:
                    if resp.status != 200:
                        raise RuntimeError("registering %s: %d %s" % (localpart, resp.status, await resp.text()))
                    body = await resp.json()
            return {"user_id": body["user_id"], "token": body["access_token"]}

        users = await asyncio.gather(*[one(i) for i in range(args.users)])
        rooms = {}
        for start in range(0, len(users), 5):
            members = users[start:start + 5]
            owner = members[0]
            async with session.post(BASE_URL + "/_matrix/client/v3/createRoom",
                                    headers={"Authorization": "Bearer %s" % owner["token"]},
                                    json={"preset": "public_chat", "name": "bench %d" % (start // 5)}) as resp:
                room_id = (await resp.json())["room_id"]
            for m in members[1:]:
                async with session.post(BASE_URL + "/_matrix/client/v3/join/%s" % room_id,
                                        headers={"Authorization": "Bearer %s" % m["token"]}) as resp:
                    if resp.status != 200:
                        raise RuntimeError("join: %d %s" % (resp.status, await resp.text()))
            for m in members:
                m["room_id"] = room_id
            rooms[room_id] = members
    return list(users), rooms


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(math.floor(k)), int(math.ceil(k))
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def measure(args, name):
    secret = docker_exec("cat", "/etc/matrix-synapse/secrets/registration_shared_secret").strip()
    prefix = "bench%s" % uuid.uuid4().hex[:6]
    users, rooms = await register_users(args, secret, prefix)
    log("layout %s: %d users in %d rooms registered; ramping" % (name, len(users), len(rooms)))
    load = Load(args, users, rooms)
    steps = await load.run()
    best = max(steps, key=lambda s: s["delivered_per_s"])
    lat = load.latencies(best["t0"], best["t1"])
    undelivered = sum(1 for e in load.stats.sent if load.stats.complete_at(e) is None)
    for s in steps:
        s.pop("t0"), s.pop("t1")
    return {
        "saturation": {"reached": load.saturated, "senders": best["senders"], "sent_per_s": best["sent_per_s"],
                       "delivered_per_s": best["delivered_per_s"],
                       "p50_ms": round(percentile(lat, 50) or 0), "p95_ms": round(percentile(lat, 95) or 0),
                       "reads_per_s": best["reads_per_s"], "media_per_s": best["media_per_s"],
                       "client_cpu_pct": best["client_cpu_pct"], "processes": best["processes"]},
        "messages_sent": len(load.stats.sent), "undelivered": undelivered, "timeline_gaps": load.stats.gaps,
        "errors": load.stats.errors, "steps": steps,
    }


def print_report(results, out=sys.stdout):
    base = results.get("monolith", {}).get("saturation", {}).get("delivered_per_s")
    print("\n%-14s %5s %9s %9s %8s %8s %11s %9s %10s" % ("layout", "procs", "sent/s", "deliv/s", "p50 ms", "p95 ms",
                                                           "undelivered", "x mono", "saturated"), file=out)
    for name, r in results.items():
        if "error" in r:
            print("%-14s failed: %s" % (name, r["error"]), file=out)
            continue
        s = r["saturation"]
        ratio = "%.2f" % (s["delivered_per_s"] / base) if base else "-"
        print("%-14s %5d %9.1f %9.1f %8d %8d %11d %9s %10s" % (
            name, 1 + len(r["deploy"]["workers"]), s["sent_per_s"], s["delivered_per_s"], s["p50_ms"], s["p95_ms"],
            r["undelivered"], ratio, "yes" if s["reached"] else "no (ramp limit)"), file=out)
    for name, r in results.items():
        if "error" in r:
            continue
        s = r["saturation"]
        print("\n%s at saturation (%d senders; load client %.0f%% CPU; %s reads/s, %s media/s; errors %s; "
              "timeline gaps %d):" % (name, s["senders"], s["client_cpu_pct"], s["reads_per_s"], s["media_per_s"],
                                      r["errors"] or "none", r["timeline_gaps"]), file=out)
        for proc, u in sorted(s["processes"].items(), key=lambda kv: -kv[1]["cpu_pct"]):
            print("  %-22s CPU %5.1f%%  RSS %5d MB  PSS %5d MB%s" % (
                proc, u["cpu_pct"], u["rss_mb"], u["pss_mb"], "  (%d processes)" % u["procs"] if u["procs"] > 1 else ""),
                file=out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layouts", default="monolith,auto,specialised",
                        help="comma-separated: %s, or NAME=JSON extra vars" % ", ".join(sorted(LAYOUTS)))
    parser.add_argument("--users", type=int, default=60, help="users, in rooms of 5 (default 60)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between a sender's messages")
    parser.add_argument("--step", type=float, default=20, help="seconds per ramp step (default 20)")
    parser.add_argument("--start-senders", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=10, help="seconds of load before the first step")
    parser.add_argument("--growth", type=float, default=1.5, help="senders multiply by this per step")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--plateau", type=float, default=0.05,
                        help="a step must beat the best so far by this share, else the ramp counts it flat; "
                             "two flat steps end the ramp")
    parser.add_argument("--drain", type=float, default=60, help="seconds to wait for the last deliveries")
    parser.add_argument("--read-share", type=float, default=0.1, help="share of users reading history")
    parser.add_argument("--read-every", type=float, default=2.0)
    parser.add_argument("--media-share", type=float, default=0.05, help="share of users uploading media")
    parser.add_argument("--media-every", type=float, default=5.0)
    parser.add_argument("--media-kb", type=int, default=64)
    parser.add_argument("--no-deploy", action="store_true", help="measure what runs now (one layout name)")
    parser.add_argument("--output", default=os.path.join(ROOT, ".cache", "bench"))
    parser.add_argument("--keep", action="store_true", help="keep the container afterwards")
    args = parser.parse_args()

    layouts = []
    for item in args.layouts.split(","):
        name, _, spec = item.partition("=")
        if spec:
            layouts.append((name, json.loads(spec)))
        elif name in LAYOUTS:
            layouts.append((name, LAYOUTS[name]))
        else:
            parser.error("unknown layout %r; known: %s (or NAME=JSON)" % (name, ", ".join(sorted(LAYOUTS))))
    os.makedirs(args.output, exist_ok=True)
    logdir = tempfile.mkdtemp(prefix="layouts-", dir=args.output)
    started = time.monotonic()
    results = {}
    try:
        for name, extra in layouts:
            log("layout %s: deploying %s" % (name, json.dumps(extra)))
            try:
                info = {"seconds": 0, "workers": [], "summary": []} if args.no_deploy else deploy(name, extra, logdir)
                if args.no_deploy:
                    record = json.loads(docker_exec("cat", "/etc/matrix-synapse/deployed.json"))
                    info["workers"] = [w["name"] for w in record["plan"]["workers"]]
                for line in info["summary"]:
                    log("  " + line)
                time.sleep(5)  # the proxy's health checks see every backend up
                result = asyncio.run(measure(args, name))
                result["deploy"] = info
                results[name] = result
            except (RuntimeError, subprocess.SubprocessError, OSError, aiohttp.ClientError) as exc:
                log("layout %s failed: %s" % (name, exc))
                results[name] = {"error": str(exc)}
    finally:
        if not args.keep and not args.no_deploy:
            subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True)
    machine = {"cores": os.cpu_count(), "load_at_end": os.getloadavg(), "minutes": round((time.monotonic() - started) / 60, 1)}
    path = os.path.join(logdir, "results.json")
    with open(path, "w") as f:
        json.dump({"machine": machine, "args": vars(args), "results": results}, f, indent=1)
    print_report(results)
    print("\n%d layout(s) in %.1f minutes; %d cores, load average %.1f at the end; details: %s"
          % (len(results), machine["minutes"], machine["cores"], machine["load_at_end"][0], path))


if __name__ == "__main__":
    main()
