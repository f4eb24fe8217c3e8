"""Synapse itself as the oracle for the planner.

The pinned Synapse (catalog.SYNAPSE_VERSION) is installed once into a cached venv under
``.cache/synapse-oracle/`` and its own configuration parser judges what the planner writes:

* every valid wish hypothesis can build from the catalogue plans into a shared config and
  per-worker configs that Synapse loads (``python -m synapse.config -c shared -c worker``),
  and what Synapse reads back from them (stream writers, duties, media, replication
  listeners, metrics) is what the plan promises;
* what the planner refuses about stream writers, Synapse refuses too, and what Synapse
  accepts the planner accepts: the rules in catalog.STREAMS are Synapse's.

Parsing goes through a small driver run by the oracle venv's Python, kept alive for the
session: it calls ``HomeServerConfig.load_config`` exactly as ``python -m synapse.config``
does (one test checks both give the same verdicts) and answers in JSON.

The venv needs PyPI once (about a minute). Without it these tests fail; set
MATRIXOPS_SYNAPSE_ORACLE=skip to skip them on purpose (ignored when CI=true).
"""
import copy
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ansible_collections.matrixops.synapse.plugins.module_utils.catalog import (
    MAIN, MAIN_WRITER, STREAMS, SYNAPSE_VERSION, WORKER_TYPES, version_tuple,
)
from ansible_collections.matrixops.synapse.plugins.module_utils.planner import DEFAULTS as PLANNER_DEFAULTS
from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError, plan
from ansible_collections.matrixops.synapse.plugins.module_utils.profiles import PROFILE_NAMES
from helpers import wish as make_wish

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE_DIR = os.environ.get("MATRIXOPS_CACHE_DIR") or os.path.join(ROOT, ".cache")
ORACLE_DIR = os.path.join(CACHE_DIR, "synapse-oracle")
VENV_DIR = os.path.join(ORACLE_DIR, "venv-%s" % SYNAPSE_VERSION)
# The config parser needs the redis extra (RedisConfig calls check_requirements("redis") when
# redis is enabled, as the planner always sets); it never imports psycopg2. psycopg2-binary is
# there so `database.name: psycopg2` stays resolvable without a compiler or libpq-dev.
REQUIREMENTS = ["matrix-synapse[redis]==%s" % SYNAPSE_VERSION, "psycopg2-binary>=2.9"]
READY_MARKER = ".matrixops-oracle-ready"
VERSION = version_tuple(SYNAPSE_VERSION)

# What Synapse calls each duty the catalogue knows: shared-config key -> attribute of
# synapse.config.workers.WorkerConfig that says whether *this* process performs it.
SYNAPSE_DUTY_FLAGS = {
    "federation_sender_instances": "send_federation",
    "pusher_instances": "start_pushers",
    "run_background_tasks_on": "run_background_tasks",
    "notify_appservices_from_worker": "should_notify_appservices",
    "update_user_directory_from_worker": "should_update_user_directory",
    # Not a per-process flag: checked through the media facts below.
    "media_instance_running_background_jobs": None,
}
MEDIA_TYPES = frozenset(n for n, t in WORKER_TYPES.items() if t.worker_config.get("enable_media_repo"))
SERVER_NAME = "oracle.example.test"


# --------------------------------------------------------------------------- the oracle venv

def _ready(path):
    try:
        with open(os.path.join(path, READY_MARKER)) as f:
            return json.load(f) == REQUIREMENTS
    except (OSError, ValueError):
        return False


def _run(cmd, what):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=1800)
    if proc.returncode:
        raise RuntimeError("%s failed (exit %d): %s\n%s" % (what, proc.returncode, " ".join(cmd), proc.stdout[-4000:]))


def ensure_oracle_venv(path=VENV_DIR):
    """Create the venv once; concurrent runs wait on a lock, readers only trust the marker,
    which is written (atomically) last."""
    if _ready(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _ready(path):
            return path
        shutil.rmtree(path, ignore_errors=True)  # a half-built or outdated venv
        _run([sys.executable, "-m", "venv", path], "creating the Synapse oracle venv")
        _run([os.path.join(path, "bin", "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
             + REQUIREMENTS, "installing %s" % " ".join(REQUIREMENTS))
        marker = os.path.join(path, READY_MARKER)
        with open(marker + ".tmp", "w") as f:
            json.dump(REQUIREMENTS, f)
        os.replace(marker + ".tmp", marker)
    return path


# The driver runs inside the oracle venv: one JSON request per line in, one JSON answer per line out.
DRIVER = textwrap.dedent('''
    import json, logging, os, sys, traceback

    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)               # anything Synapse prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr

    import attr
    import jinja2
    import jsonschema

    # Speed-ups that cannot change a verdict (together they cut a load to a third):
    # 1. jsonschema.validate first checks that Synapse's own (constant) schema is a valid
    #    schema; do that once per schema instead of on every call.
    _checked_schemas = set()


    def _validate(instance, schema, cls=None, *args, **kwargs):
        if cls is None:
            cls = jsonschema.validators.validator_for(schema)
        key = (cls, json.dumps(schema, sort_keys=True, default=repr))
        if key not in _checked_schemas:
            cls.check_schema(schema)
            _checked_schemas.add(key)
        error = jsonschema.exceptions.best_match(cls(schema, *args, **kwargs).iter_errors(instance))
        if error is not None:
            raise error


    jsonschema.validate = _validate


    # 2. Synapse compiles its bundled Jinja templates on every load; keep the compiled code
    #    (Jinja still checks each template's source checksum before reusing it).
    class _MemoryBytecodeCache(jinja2.BytecodeCache):
        def __init__(self):
            self.store = {}

        def load_bytecode(self, bucket):
            if bucket.key in self.store:
                bucket.bytecode_from_string(self.store[bucket.key])

        def dump_bytecode(self, bucket):
            self.store[bucket.key] = bucket.bytecode_to_string()


    _bytecode_cache = _MemoryBytecodeCache()
    _environment_init = jinja2.Environment.__init__


    def _init(self, *args, **kwargs):
        if len(args) < 21:  # bytecode_cache is the 21st parameter after self
            kwargs.setdefault("bytecode_cache", _bytecode_cache)
        _environment_init(self, *args, **kwargs)


    jinja2.Environment.__init__ = _init

    # 3. Every process of a plan reads the same shared file: parse each distinct text once
    #    (the YAML parser is pure Python here) and hand out deep copies.
    import copy
    import yaml
    import synapse.config._base as synapse_config_base


    class _CachingYaml(object):
        def __init__(self):
            self.parsed = {}

        def safe_load(self, stream):
            text = stream if isinstance(stream, str) else stream.read()
            if text not in self.parsed:
                if len(self.parsed) > 64:
                    self.parsed.clear()
                self.parsed[text] = yaml.safe_load(text)
            return copy.deepcopy(self.parsed[text])

        def __getattr__(self, name):
            return getattr(yaml, name)


    synapse_config_base.yaml = _CachingYaml()

    from synapse.config._base import ConfigError
    from synapse.config.homeserver import HomeServerConfig
    from synapse.config.workers import WriterLocations


    class Collect(logging.Handler):
        def __init__(self):
            logging.Handler.__init__(self, logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())


    collect = Collect()
    logging.getLogger().addHandler(collect)


    def listener(li):
        http = getattr(li, "http_options", None)
        return {"type": li.type, "port": getattr(li, "port", None),
                "bind_addresses": list(getattr(li, "bind_addresses", []) or []),
                "resources": sorted(n for r in (http.resources if http else []) for n in r.names)}


    def facts(cfg):
        w = cfg.worker
        media = cfg.media
        return {
            "instance_name": w.instance_name,
            "worker_app": w.worker_app,
            "writers": attr.asdict(w.writers),
            "instance_map": dict((n, {"host": getattr(loc, "host", None), "port": getattr(loc, "port", None)})
                                 for n, loc in w.instance_map.items()),
            "listeners": [listener(li) for li in (w.worker_listeners if w.worker_app else cfg.server.listeners)],
            "duties": {
                "send_federation": w.send_federation,
                "start_pushers": w.start_pushers,
                "run_background_tasks": w.run_background_tasks,
                "should_notify_appservices": w.should_notify_appservices,
                "should_update_user_directory": w.should_update_user_directory,
            },
            "can_load_media_repo": media.can_load_media_repo,
            "media_instance_running_background_jobs": getattr(media, "media_instance_running_background_jobs", None),
            "enable_metrics": cfg.metrics.enable_metrics,
            "redis_enabled": cfg.redis.redis_enabled,
            "cache_factor": cfg.caches.global_factor,
            "database_args": dict((k, v) for k, v in cfg.database.databases[0].config.get("args", {}).items()
                                  if k in ("cp_min", "cp_max", "passfile", "host", "dbname", "user")),
        }


    def load(args):
        del collect.messages[:]
        try:
            cfg = HomeServerConfig.load_config("", args)
        except ConfigError as e:
            return {"ok": False, "error": str(e), "warnings": list(collect.messages)}
        except SystemExit as e:
            return {"ok": False, "error": "exit %s (bad arguments?)" % e.code, "warnings": []}
        except Exception:
            return {"ok": False, "error": traceback.format_exc(), "warnings": list(collect.messages)}
        return {"ok": True, "facts": facts(cfg), "warnings": list(collect.messages)}


    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "load":
            answer = dict((name, load(args)) for name, args in req["processes"])
        elif req["op"] == "streams":
            answer = sorted(a.name for a in attr.fields(WriterLocations))
        else:
            answer = {"error": "unknown op"}
        out.write(json.dumps(answer) + "\\n")
        out.flush()
''')


class Oracle(object):
    """A long-lived driver process in the oracle venv."""

    def __init__(self, venv, workdir):
        self.python = os.path.join(venv, "bin", "python")
        self.workdir = workdir
        script = os.path.join(workdir, "oracle_driver.py")
        with open(script, "w") as f:
            f.write(DRIVER)
        self.stderr = open(os.path.join(workdir, "oracle_driver.stderr"), "w")
        self.proc = subprocess.Popen([self.python, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, universal_newlines=True, cwd=workdir)
        self.signing_key = os.path.join(workdir, "signing.key")
        _run([self.python, "-m", "synapse._scripts.generate_signing_key", "-o", self.signing_key],
             "generating a signing key")

    def ask(self, request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            with open(self.stderr.name) as f:
                raise RuntimeError("the Synapse oracle driver died:\n%s" % f.read()[-4000:])
        return json.loads(line)

    def load(self, processes):
        """processes: {name: [config files]} -> {name: {"ok", "error"|"facts", "warnings"}}"""
        args = [[name, [a for path in files for a in ("-c", path)]] for name, files in sorted(processes.items())]
        return self.ask({"op": "load", "processes": args})

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.stderr.close()


@pytest.fixture(scope="session")
def oracle(tmp_path_factory):
    try:
        venv = ensure_oracle_venv()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("MATRIXOPS_SYNAPSE_ORACLE") == "skip" and os.environ.get("CI") != "true":
            pytest.skip("MATRIXOPS_SYNAPSE_ORACLE=skip and the oracle venv is unavailable: %s" % exc)
        pytest.fail("cannot build the Synapse %s oracle venv in %s: %s" % (SYNAPSE_VERSION, VENV_DIR, exc),
                    pytrace=False)
    driver = Oracle(venv, str(tmp_path_factory.mktemp("synapse-oracle")))
    yield driver
    driver.close()


# --------------------------------------------------------------------------- rendering as the roles do

def combine(base, override):
    """Ansible's ``combine(recursive=True)``: mappings merge, everything else is replaced."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = combine(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(content)
    return path


def _dump(path, data):
    return _write(path, yaml.safe_dump(data, sort_keys=True, default_flow_style=False))


def render(result, root, signing_key, shared_override=None):
    """Write the files roles/synapse_common and roles/synapse_worker would write (secrets in
    *_path files) under ``root``; return {process name: [config files in -c order]}."""
    secrets = os.path.join(root, "secrets")
    for name in ("macaroon_secret_key", "form_secret", "registration_shared_secret",
                 "worker_replication_secret", "redis_password"):
        _write(os.path.join(secrets, name), "oracle-%s-0123456789abcdef\n" % name)
    _write(os.path.join(secrets, "pgpass"), "*:*:*:synapse:oracle-db-password\n")
    log_config = "version: 1\nroot:\n  level: WARNING\ndisable_existing_loggers: false\n"
    base = {
        "server_name": SERVER_NAME,
        "public_baseurl": "https://%s/" % SERVER_NAME,
        "report_stats": False,
        "signing_key_path": signing_key,
        "media_store_path": os.path.join(root, "media"),
        "log_config": _write(os.path.join(root, "log", "main.yaml"), log_config),
        "trusted_key_servers": [{"server_name": "matrix.org"}],
        "suppress_key_server_warning": True,
        "enable_registration": False,
        "macaroon_secret_key_path": os.path.join(secrets, "macaroon_secret_key"),
        "form_secret_path": os.path.join(secrets, "form_secret"),
        "registration_shared_secret_path": os.path.join(secrets, "registration_shared_secret"),
        "worker_replication_secret_path": os.path.join(secrets, "worker_replication_secret"),
    }
    secret_refs = {
        "redis": {"password_path": os.path.join(secrets, "redis_password")},
        "database": {"args": {"passfile": os.path.join(secrets, "pgpass")}},
    }
    shared = combine(combine(base, result["shared_config"]), secret_refs)
    if shared_override:
        shared = shared_override(shared)
    shared_path = _dump(os.path.join(root, "homeserver.yaml"), shared)
    processes = {MAIN: [shared_path]}
    for w in result["workers"]:
        log_path = w["config"].get("worker_log_config")
        if log_path and log_path.startswith(root):
            _write(log_path, log_config)
        own = w["config"]
        if "database" in own:  # as roles/synapse_worker writes it: the password file added
            own = combine(own, {"database": secret_refs["database"]})
        processes[w["name"]] = [shared_path, _dump(os.path.join(root, "workers", w["name"] + ".yaml"), own)]
    return processes


def plan_and_load(oracle, wish, root):
    wish = dict(wish, config_dir=root)  # worker_log_config paths land in the sandbox
    result = plan(wish)
    return result, oracle.load(render(result, root, oracle.signing_key))


def failures(answers):
    return dict((name, a["error"]) for name, a in answers.items() if not a["ok"])


# --------------------------------------------------------------------------- what the plan promises

def _types_of(result):
    types = {MAIN: ()}
    for w in result["workers"]:
        types[w["name"]] = tuple(w["types"])
    return types


def check_semantics(result, answers):
    """What Synapse read from the files is what the plan says each process does."""
    facts = dict((name, a["facts"]) for name, a in answers.items())
    types = _types_of(result)
    shared = result["shared_config"]

    # Every process knows who it is.
    for name in facts:
        expected = MAIN_WRITER if name == MAIN else name
        assert facts[name]["instance_name"] == expected, name
        assert facts[name]["redis_enabled"] is True, name

    # Stream writers: as planned, identical in every process; a stream not planned stays on main.
    planned_writers = dict((s, shared.get("stream_writers", {}).get(s, [MAIN_WRITER])) for s in STREAMS)
    for name, f in facts.items():
        assert f["writers"] == planned_writers, name
    for stream, writers in planned_writers.items():
        for writer in writers:
            assert writer == MAIN_WRITER or stream in _streams_of(types[writer]), (stream, writer)

    # Duties: exactly the processes whose types carry a duty perform it; main when none does.
    duty_keys = set(d.key for t in WORKER_TYPES.values() for d in t.duties)
    assert duty_keys <= set(SYNAPSE_DUTY_FLAGS), "teach SYNAPSE_DUTY_FLAGS the new duties: %s" % (
        sorted(duty_keys - set(SYNAPSE_DUTY_FLAGS)))
    for key, flag in sorted(SYNAPSE_DUTY_FLAGS.items()):
        if flag is None:
            continue
        holders = set(n for n, ts in types.items() if any(d.key == key for t in ts for d in WORKER_TYPES[t].duties))
        expected = holders or {MAIN}
        actual = set(n for n, f in facts.items() if f["duties"][flag])
        assert actual == expected, "%s (%s): Synapse runs it on %s, the plan on %s" % (
            key, flag, sorted(actual), sorted(expected))

    # Media: with media workers, only they load the media repository and one of them runs its
    # background jobs. Without any, main loads it (and so does every worker, as the shared
    # enable_media_repo stays true, as in Synapse's own docker worker setup: not asserted).
    media = set(n for n, ts in types.items() if MEDIA_TYPES & set(ts))
    loaders = set(n for n, f in facts.items() if f["can_load_media_repo"])
    jobs = set(facts[n]["media_instance_running_background_jobs"] for n in loaders)
    if media:
        assert loaders == media
        assert len(jobs) == 1 and jobs.pop() in media
    else:
        assert MAIN in loaders

    # Replication: every instance_map entry a process sees is a replication listener of the
    # process it names, on the address that listener binds.
    by_instance = dict((f["instance_name"], f) for f in facts.values())
    for name, f in facts.items():
        for target, loc in f["instance_map"].items():
            # Main keeps the entry as "main"; workers read it as "master".
            target_facts = by_instance[MAIN_WRITER if target == MAIN else target]
            assert any(li["port"] == loc["port"] and loc["host"] in li["bind_addresses"]
                       and "replication" in li["resources"] for li in target_facts["listeners"]), (name, target, loc)
        if name != MAIN:
            assert MAIN_WRITER in f["instance_map"], name

    # Tuning: each process reads the pool and cache factor the plan gives it, and every pool
    # still reaches the one database with the password file.
    for proc in result["layout"]["processes"]:
        f = facts[proc["name"]]
        if proc.get("cp_max") is not None:
            assert f["database_args"]["cp_min"] == proc["cp_min"], proc
            assert f["database_args"]["cp_max"] == proc["cp_max"], proc
            assert f["cache_factor"] == proc["cache_factor"], proc
        assert f["database_args"]["passfile"] == facts[MAIN]["database_args"]["passfile"], proc["name"]
        for key in ("host", "dbname", "user"):
            assert f["database_args"][key] == shared["database"]["args"][key], (proc["name"], key)

    # Listeners: no two processes bind the same address and port; metrics where asked for.
    bound = {}
    for name, f in facts.items():
        for li in f["listeners"]:
            for address in li["bind_addresses"]:
                assert (address, li["port"]) not in bound, (name, bound.get((address, li["port"])), address, li)
                bound[(address, li["port"])] = name
        metrics = [li for li in f["listeners"] if li["type"] == "metrics"]
        assert len(metrics) == (1 if shared.get("enable_metrics") else 0), name
        assert f["enable_metrics"] is bool(shared.get("enable_metrics")), name


def _streams_of(type_names):
    return set(s for t in type_names for s in WORKER_TYPES[t].streams)


# --------------------------------------------------------------------------- random valid wishes

MAX_PER_GROUP = 3
HOSTS = {"hs1": "10.0.0.10", "hs2": "10.0.0.11", "hs3": "fd00::13"}  # hs1 is main's (helpers.BASE_WISH)
RESERVED_PORTS = (8008, 9093, 9000, 6379, 5432, 8080, 8448)  # main, redis, database and proxy defaults


def _usable(type_name, allow_experimental):
    t = WORKER_TYPES[type_name]
    return (version_tuple(t.since) <= VERSION and (allow_experimental or not t.experimental)
            and all(version_tuple(STREAMS[s].since) <= VERSION for s in t.streams))


def _one_writer(stream):
    rule = STREAMS[stream]
    return rule.max_writers is not None or rule.multi_since is None or VERSION < version_tuple(rule.multi_since)


@st.composite
def valid_wishes(draw):
    """A wish the planner must accept: derived from the catalogue's max_count (over all groups
    holding a type) and the one-writer streams (over all groups writing them)."""
    allow_experimental = draw(st.booleans())
    usable = [n for n in sorted(WORKER_TYPES) if _usable(n, allow_experimental)]
    left = dict((n, WORKER_TYPES[n].max_count) for n in usable)   # None: any number
    claimed = set()                                                  # one-writer streams given away
    hosts = sorted(HOSTS)[:draw(st.integers(1, len(HOSTS)))]

    def room(members):
        cap = MAX_PER_GROUP
        for m in members:
            if left[m] is not None:
                cap = min(cap, left[m])
        for stream in set(s for m in members for s in WORKER_TYPES[m].streams):
            if _one_writer(stream):
                cap = 0 if stream in claimed else min(cap, 1)
        return cap

    def take(members, count):
        for m in members:
            if left[m] is not None:
                left[m] -= count
        claimed.update(s for m in members for s in WORKER_TYPES[m].streams if _one_writer(s))

    # Media workers share one media store: on one host unless the wish says it is shared.
    media_store_shared = draw(st.booleans())
    media_host = []

    def spec(count, members, extra=None):
        host = draw(st.sampled_from(hosts))
        if MEDIA_TYPES & set(members) and not media_store_shared:
            media_host[:] = media_host or [host]
            host = media_host[0]
        if host == "hs1" and not extra and draw(st.booleans()):
            return count
        return dict(extra or {}, count=count, host=host)

    workers = {}
    for i in range(draw(st.integers(0, 2))):
        members = draw(st.lists(st.sampled_from(usable), min_size=2, max_size=3, unique=True))
        cap = room(members)
        if cap:
            count = draw(st.integers(1, cap))
            take(members, count)
            workers["merged%d" % i] = spec(count, members, {"types": members})
    for name in draw(st.permutations(usable)):  # each type in about half the wishes
        cap = room([name])
        if cap and draw(st.booleans()):
            count = draw(st.integers(1, cap))
            take([name], count)
            workers[name] = spec(count, [name])

    metrics = draw(st.booleans())
    # Ports: every wish entry owns a block of worker_port_block ports from worker_port_base, one
    # slot per catalogue type and per merged entry; an instance takes up to 3 (http, replication,
    # metrics). Keep the whole span clear of main's, Redis's, PostgreSQL's and the proxy's ports.
    block = draw(st.one_of(st.none(), st.integers(3 * MAX_PER_GROUP, 300)))
    span = (len(WORKER_TYPES) + len(workers)) * (block or PLANNER_DEFAULTS["worker_port_block"])
    base = draw(st.integers(1024, 65000))
    assume(base + span - 1 <= 65535)
    assume(not any(base <= p < base + span for p in RESERVED_PORTS))
    extra = {} if block is None else {"worker_port_block": block}
    # A sizing profile on top (its types step aside for the entries above), and the tuning,
    # its memory scaled to a host that may be tight.
    profile = draw(st.sampled_from((None,) + PROFILE_NAMES))
    if profile is not None:
        extra["profile"] = profile
        extra["sizing"] = {"cores": draw(st.integers(1, 16)),
                           "memory_mb": draw(st.one_of(st.none(), st.integers(512, 65536))),
                           "expected_users": draw(st.one_of(st.none(), st.integers(0, 5000)))}
    extra["tuning"] = draw(st.booleans())
    return make_wish(workers, hosts=dict((h, {"address": HOSTS[h]}) for h in hosts), metrics=metrics,
                     worker_port_base=base, allow_experimental=allow_experimental,
                     media_store_shared=media_store_shared, **extra)


# --------------------------------------------------------------------------- tests

SKELETON = {"synchrotron": 2, "client_reader": 1, "event_persister": 2, "federation_sender": 1,
            "pusher": 1, "media_repository": 1, "background": 1}


def test_driver_agrees_with_synapse_config_cli(oracle, tmp_path):
    """The driver's verdicts are those of `python -m synapse.config -c ...` itself, on a
    planned main and worker and on a worker whose shared config has two typing writers."""
    root = str(tmp_path)
    result, answers = plan_and_load(oracle, make_wish(SKELETON), root)
    good = render(result, root, oracle.signing_key)

    def two_typing_writers(shared):
        shared["stream_writers"] = dict(shared["stream_writers"], typing=["event_persister1", "event_persister2"])
        return shared
    bad = render(result, str(tmp_path / "bad"), oracle.signing_key, shared_override=two_typing_writers)
    bad_answer = oracle.load({"event_persister1": bad["event_persister1"]})["event_persister1"]
    cases = [(good[MAIN], answers[MAIN]), (good["event_persister1"], answers["event_persister1"]),
             (bad["event_persister1"], bad_answer)]
    runs = [subprocess.Popen([oracle.python, "-m", "synapse.config"] + [a for p in files for a in ("-c", p)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, cwd=root)
            for files, _ in cases]
    for (files, answer), run in zip(cases, runs):
        output = run.communicate(timeout=120)[0]
        assert (run.returncode == 0) == answer["ok"], (files, output, answer)
    assert answers[MAIN]["ok"] and answers["event_persister1"]["ok"]
    assert not bad_answer["ok"] and "typing" in bad_answer["error"], bad_answer


def test_catalog_streams_are_synapses(oracle):
    """catalog.STREAMS names every stream Synapse's stream_writers knows, and no other."""
    assert sorted(STREAMS) == oracle.ask({"op": "streams"})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wish=valid_wishes())
def test_planned_configs_parse_in_synapse(oracle, wish):
    with tempfile.TemporaryDirectory(prefix="oracle-") as root:
        try:
            result, answers = plan_and_load(oracle, wish, root)
        except PlanError as exc:
            pytest.fail("the planner refused a valid wish: %s\nwish: %r" % (exc, wish))
        bad = failures(answers)
        assert not bad, "Synapse %s rejects planned configs: %s\nwish: %r" % (SYNAPSE_VERSION, bad, wish)
        check_semantics(result, answers)


@pytest.mark.parametrize("profile, sizing", [
    ("auto", {"cores": 2, "memory_mb": 4096}),
    ("auto", {"cores": 2, "memory_mb": 1400, "expected_users": 900}),
    ("monolith", {}),
    ("medium", {"cores": 4, "memory_mb": 2048}),
    ("large", {}),
])
def test_profiles_and_their_tuning_load_in_synapse(oracle, tmp_path, profile, sizing):
    """Every profile, with the tuning it brings (per-worker pools and caches, memory scaled to
    a tight host), loads in Synapse, and Synapse reads each process's pool and cache factor."""
    result, answers = plan_and_load(oracle, make_wish({}, profile=profile, sizing=sizing), str(tmp_path))
    assert not failures(answers), failures(answers)
    check_semantics(result, answers)
    if profile == "large":
        factors = set(a["facts"]["cache_factor"] for a in answers.values())
        pools = set(a["facts"]["database_args"]["cp_max"] for a in answers.values())
        assert len(factors) > 1 and len(pools) > 1, (factors, pools)  # really per process


def _monolith_with(tmp_path, oracle, writers):
    """Main's config from a monolith plan, with instance_map entries for the writers named in
    ``writers`` and that stream_writers — as an operator might write it by hand."""
    result = plan(make_wish({}, config_dir=str(tmp_path)))
    names = sorted(set(n for ns in writers.values() for n in ns))

    def edit(shared):
        shared["instance_map"] = dict([(MAIN, {"host": "10.0.0.10", "port": 9093})] + [
            (n, {"host": "10.0.0.10", "port": 19000 + i}) for i, n in enumerate(names)])
        shared["stream_writers"] = writers
        return shared
    return oracle.load({MAIN: render(result, str(tmp_path), oracle.signing_key, shared_override=edit)[MAIN]})[MAIN]


def _writer_type(stream):
    """A catalogue type writing ``stream`` (the plainest: fewest streams, then by name)."""
    return sorted((len(t.streams), n) for n, t in WORKER_TYPES.items() if stream in t.streams)[0][1]


@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_synapse_rejects_an_empty_writer_list(oracle, tmp_path, stream):
    """The planner leaves a stream without writers out (C02): Synapse refuses `stream: []`."""
    answer = _monolith_with(tmp_path, oracle, {stream: []})
    assert not answer["ok"], answer


@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_planner_and_synapse_agree_on_two_writers(oracle, tmp_path, stream):
    """Two writers for a stream: the planner refuses exactly when Synapse does."""
    synapse_ok = _monolith_with(tmp_path, oracle, {stream: ["writer_a", "writer_b"]})
    wtype = _writer_type(stream)
    try:
        plan(make_wish({wtype: 2}, allow_experimental=True))
        planner_ok = True
    except PlanError as exc:
        planner_ok = False
        assert "stream %r" % stream in str(exc), str(exc)
    assert planner_ok == synapse_ok["ok"], (stream, wtype, synapse_ok)
    assert planner_ok == (not _one_writer(stream))


def test_synapse_rejects_a_writer_missing_from_instance_map(oracle, tmp_path):
    result = plan(make_wish({}, config_dir=str(tmp_path)))

    def edit(shared):
        shared["instance_map"] = {MAIN: {"host": "10.0.0.10", "port": 9093}}
        shared["stream_writers"] = {"events": ["event_persister1"]}
        return shared
    answer = oracle.load({MAIN: render(result, str(tmp_path), oracle.signing_key, shared_override=edit)[MAIN]})[MAIN]
    assert not answer["ok"] and "instance_map" in answer["error"], answer


SINGLE_DUTY_TYPES = sorted(n for n, t in WORKER_TYPES.items()
                           if t.max_count == 1 and any(d.kind == "single" for d in t.duties))


@pytest.mark.parametrize("wtype", SINGLE_DUTY_TYPES)
def test_single_duty_type_in_two_entries_is_refused(wtype):
    """Synapse would run the duty on one instance only: the planner refuses the second."""
    wish = make_wish({wtype: 1, "merged": {"types": [wtype, "client_reader"]}})
    with pytest.raises(PlanError) as err:
        plan(wish)
    assert "workers.%s/merged.count" % wtype in err.value.format() or \
        "workers.merged/%s.count" % wtype in err.value.format(), err.value.format()
