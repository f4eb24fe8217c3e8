# -*- coding: utf-8 -*-
# Copyright: matrixops.synapse contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure planning logic: an operator's worker wish in, every process's configuration out.

No Ansible, no I/O. ``plan(wish)`` returns a dict; bad input raises ``PlanError`` carrying
every problem found, each naming the field and the fix, so nothing is touched on any host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
from collections import Counter
import re

from ansible_collections.matrixops.synapse.plugins.module_utils.catalog import (
    ENDPOINT_GROUPS, GENERIC_APP, LEGACY_DUTY_FLAGS, MAIN, MAIN_WRITER, PLANNER_OWNED_KEYS,
    REMOVED_KEYS, RESTART_SCOPES, ROUTING_ORDER, STREAMS, SYNAPSE_VERSION, WORKER_TYPES, pip_requirements,
    version_tuple,
)
from ansible_collections.matrixops.synapse.plugins.module_utils.placement import (
    apply_placement, check_addresses,
)
from ansible_collections.matrixops.synapse.plugins.module_utils import profiles

DEFAULTS = {
    "synapse_version": SYNAPSE_VERSION,
    "worker_port_base": 18100,
    "worker_port_block": 100,
    "config_dir": "/etc/matrix-synapse",
    "main": {"client_port": 8008, "replication_port": 9093, "metrics_port": 9000, "client_bind": None},
    "redis": {"port": 6379},
    "database": {"port": 5432, "name": "synapse", "user": "synapse", "cp_min": 5, "cp_max": 10,
                 "reserve": 20, "max_connections": None, "running_max_connections": None},
    "proxy": {"client_port": 8080, "federation_port": 8448},
}

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_MEMORY_RE = re.compile(r"^([0-9]+[KMGT]?|infinity|[0-9]{1,3}%)$")
_CPU_QUOTA_RE = re.compile(r"^[0-9]+%$")
_LIMIT_KEYS = {"memory_high": "MemoryHigh", "memory_max": "MemoryMax", "cpu_weight": "CPUWeight",
               "cpu_quota": "CPUQuota"}
_GROUP_OPTIONS = ("count", "host", "config", "name", "names", "limits", "types")


class Kind(object):
    """A kind of worker process: one catalogue row, or several merged into one process."""

    def __init__(self, name, rows):
        self.name = name
        self.members = tuple(r.name for r in rows)
        self.description = " + ".join(r.description for r in rows)
        self.streams = tuple(sorted(set(s for r in rows for s in r.streams)))
        self.duties = tuple(d for r in rows for d in r.duties)
        resources = []
        for r in rows:
            resources += [x for x in r.resources if x not in resources]
        if len(resources) > 1 and "health" in resources:
            resources.remove("health")  # every HTTP listener answers /health anyway
        self.resources = tuple(resources)
        limits = [r.max_count for r in rows if r.max_count is not None]
        self.max_count = min(limits) if limits else None
        self.worker_config = {}
        for r in rows:
            self.worker_config.update(r.worker_config)
        self.restart = max((r.restart for r in rows), key=RESTART_SCOPES.index)
        self.since = max((r.since for r in rows), key=version_tuple)
        self.experimental = any(r.experimental for r in rows)
        self.limited_by = [r.name for r in rows if r.max_count is not None and r.max_count == self.max_count]
_WILDCARD_ADDRESSES = ("0.0.0.0", "::", "", "*")


class PlanError(Exception):
    """Invalid wish. ``errors`` is a list of (field, message) pairs."""

    def __init__(self, errors):
        self.errors = list(errors)
        super(PlanError, self).__init__(self.format())

    def format(self):
        return "; ".join("%s: %s" % (field, msg) for field, msg in self.errors)

    def renamed(self, names):
        """The same errors, the planner's field names replaced by the names the operator set them
        as. ``names`` maps a planner field (``workers``, ``main.limits``) to the variable that
        feeds it (``synapse_workers``, ``synapse_main_limits``); the longest matching field wins,
        in the field of each error and where its message names a field (``workers.x.count``,
        ``allow_experimental: true``)."""
        if not names:
            return PlanError(self.errors)
        keys = sorted(names, key=len, reverse=True)
        # In prose a plain word (metrics, workers) is only a field when a path or a value follows.
        in_text = re.compile(r"(?<![\w.])(?:(%s)(?!\w)|(%s)(?=[.:\[]))" % (
            "|".join(re.escape(k) for k in keys if "." in k) or "(?!)",
            "|".join(re.escape(k) for k in keys if "." not in k) or "(?!)"))

        def field(name):
            for key in keys:
                if name == key or name.startswith(key + ".") or name.startswith(key + "["):
                    return names[key] + name[len(key):]
            return name

        return PlanError((field(f), in_text.sub(lambda m: names[m.group(1) or m.group(2)], msg)) for f, msg in self.errors)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _got(value):
    """The value an error quotes; a number given as a string (``-e name=40``) gets the fix."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return ("the string %r: give numbers as YAML or JSON (-e '{\"name\": %s}' or -e @vars.yml), "
                "-e name=value passes strings" % (value, value.strip()))
    return "%r" % (value,)


class _Planner(object):

    def __init__(self, wish):
        self.errors = []
        self.wish = wish or {}

    def error(self, field, message):
        self.errors.append((field, message))

    # ---------------------------------------------------------------- input normalisation

    def section(self, key):
        """A wish section merged over its defaults."""
        value = self.wish.get(key)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.error(key, "must be a mapping, got %s" % type(value).__name__)
            value = {}
        merged = dict(DEFAULTS.get(key, {}))
        merged.update(dict((k, v) for k, v in value.items() if v is not None))
        return merged

    def port(self, field, value):
        if not _is_int(value) or not 1 <= value <= 65535:
            self.error(field, "must be an integer port between 1 and 65535, got %s" % _got(value))
            return None
        return value

    def address(self, field, value):
        if not isinstance(value, str) or value.strip() in _WILDCARD_ADDRESSES:
            self.error(field, "must be an address other processes can connect to "
                              "(not a wildcard such as 0.0.0.0 or ::), got %r" % (value,))
            return None
        return value

    def normalise_workers(self, hosts, main_host):
        raw = self.workers_wish
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.error("workers", "must be a mapping of worker type to a count or to a mapping "
                                  "with 'count', got %s" % type(raw).__name__)
            return []
        groups = []
        for key in sorted(raw):
            group = self.normalise_group(key, raw[key], hosts, main_host)
            if group is not None:
                groups.append(group)
        return groups

    def normalise_group(self, key, spec, hosts, main_host):
        field = "workers.%s" % key
        if _is_int(spec) or spec is None or isinstance(spec, (str, float, bool, list)):
            spec = {"count": spec}
        if not isinstance(spec, dict):
            self.error(field, "must be a count or a mapping with 'count', got %s" % type(spec).__name__)
            return None
        unknown = sorted(set(spec) - set(_GROUP_OPTIONS))
        if unknown:
            self.error(field, "unknown option(s) %s; allowed: %s" % (", ".join(unknown), ", ".join(_GROUP_OPTIONS)))
        kind = self.kind(key, spec.get("types"), field)
        if kind is None:
            return None
        names = spec.get("names")
        count = spec.get("count", len(names) if isinstance(names, list) else 1)
        if not _is_int(count) or count < 0:
            self.error(field + ".count", "must be an integer of 0 or more, got %s" % _got(count))
            return None
        if names is not None:
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                self.error(field + ".names", "must be a list of instance names")
                return None
            if len(names) != count:
                self.error(field + ".names", "lists %d name(s) but count is %d; give one name per "
                           "instance or drop count" % (len(names), count))
                return None
        prefix = spec.get("name", key)
        if not isinstance(prefix, str) or not _NAME_RE.match(prefix):
            self.error(field + ".name", "must be a lower-case name prefix (letters, digits, _), got %r" % (prefix,))
            return None
        if kind.max_count is not None and count > kind.max_count:
            self.error(field + ".count", "%s allows at most %d instance(s) (%s); got %d — lower the count"
                       % (_kind_label(kind), kind.max_count, _why_single(kind), count))
            return None
        if kind.experimental and count and not self.wish.get("allow_experimental"):
            self.error(field, "%s is experimental in Synapse; set allow_experimental: true to use it"
                       % _kind_label(kind))
        host = spec.get("host") or main_host
        if host not in hosts:
            self.error(field + ".host", "unknown host %r; known hosts: %s" % (host, ", ".join(sorted(hosts))))
            return None
        config = spec.get("config") or {}
        if not isinstance(config, dict):
            self.error(field + ".config", "must be a mapping of extra Synapse settings")
            config = {}
        self.check_extra_keys(field + ".config", config)
        limits = self.limits(field + ".limits", spec.get("limits"))
        return {"key": key, "kind": kind, "count": count, "host": host, "config": config,
                "names": names, "prefix": prefix, "limits": limits, "host_given": spec.get("host")}

    def kind(self, key, types, field):
        if types is None:
            row = WORKER_TYPES.get(key)
            if row is None:
                self.error(field, "unknown worker type %r; known types: %s (to merge several types into "
                           "one process, give them as 'types')" % (key, ", ".join(sorted(WORKER_TYPES))))
                return None
            return Kind(key, [row])
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            self.error(field + ".types", "must be a non-empty list of worker types to merge into one process")
            return None
        unknown = [t for t in types if t not in WORKER_TYPES]
        if unknown:
            self.error(field + ".types", "unknown worker type(s) %s; known types: %s"
                       % (", ".join(unknown), ", ".join(sorted(WORKER_TYPES))))
            return None
        if len(set(types)) != len(types):
            self.error(field + ".types", "lists a type twice")
            return None
        if key in WORKER_TYPES and types != [key]:
            self.error(field, "a merged process cannot be named after the worker type %r; choose "
                              "another key" % key)
            return None
        if not _NAME_RE.match(key):
            self.error(field, "a merged process needs a lower-case name (letters, digits, _)")
            return None
        return Kind(key, [WORKER_TYPES[t] for t in types])

    def limits(self, field, raw):
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.error(field, "must be a mapping with %s" % ", ".join(sorted(_LIMIT_KEYS)))
            return {}
        result = {}
        for key in sorted(raw):
            value = raw[key]
            if key not in _LIMIT_KEYS:
                self.error("%s.%s" % (field, key), "unknown limit; allowed: %s" % ", ".join(sorted(_LIMIT_KEYS)))
            elif key == "cpu_weight":
                if not _is_int(value) or not 1 <= value <= 10000:
                    self.error("%s.%s" % (field, key), "must be an integer from 1 to 10000, got %s" % _got(value))
                else:
                    result[_LIMIT_KEYS[key]] = str(value)
            elif key == "cpu_quota":
                if not isinstance(value, str) or not _CPU_QUOTA_RE.match(value):
                    self.error("%s.%s" % (field, key), "must be a percentage such as '150%%', got %r" % (value,))
                else:
                    result[_LIMIT_KEYS[key]] = value
            else:
                if not isinstance(value, str) or not _MEMORY_RE.match(value):
                    self.error("%s.%s" % (field, key), "must be a size such as 512M or 2G (or 'infinity'), "
                               "got %r" % (value,))
                else:
                    result[_LIMIT_KEYS[key]] = value
        if "MemoryHigh" in result and "MemoryMax" in result:
            high, top = _bytes(result["MemoryHigh"]), _bytes(result["MemoryMax"])
            if high is not None and top is not None and high > top:
                self.error(field + ".memory_high", "must not exceed memory_max (%s > %s)"
                           % (result["MemoryHigh"], result["MemoryMax"]))
        return result

    def check_extra_keys(self, field, config):
        for key in sorted(config):
            if key in ("worker_replication_secret", "worker_replication_secret_path"):
                self.error("%s.%s" % (field, key),
                           "the replication secret is generated once and the same file is given to "
                           "every host (secrets/worker_replication_secret); delete the key")
            elif key in REMOVED_KEYS:
                self.error("%s.%s" % (field, key), REMOVED_KEYS[key])
            elif key in LEGACY_DUTY_FLAGS:
                self.error("%s.%s" % (field, key),
                           "legacy flag; the planner writes the duty key for it from the worker "
                           "count of type %r — delete the key and set workers.%s instead"
                           % (LEGACY_DUTY_FLAGS[key], LEGACY_DUTY_FLAGS[key]))
            elif key in PLANNER_OWNED_KEYS:
                self.error("%s.%s" % (field, key),
                           "computed by the planner from 'workers'; delete the key")

    def check_version(self, version, groups):
        for group in groups:
            if not group["count"]:
                continue
            kind = group["kind"]
            field = "workers.%s" % group["key"]
            if version < version_tuple(kind.since):
                self.error(field, "needs Synapse %s or newer, the plan targets %s; remove it or upgrade"
                           % (kind.since, _vstr(version)))
            for stream_name in kind.streams:
                stream = STREAMS[stream_name]
                if version < version_tuple(stream.since):
                    self.error(field, "writes the %s stream, which needs Synapse %s or newer, the plan "
                               "targets %s" % (stream_name, stream.since, _vstr(version)))

    # ---------------------------------------------------------------- planning

    def run(self):
        wish = self.wish
        version_raw = wish.get("synapse_version") or DEFAULTS["synapse_version"]
        try:
            version = version_tuple(version_raw)
        except ValueError:
            self.error("synapse_version", "must look like 1.163.2, got %r" % (version_raw,))
            version = version_tuple(SYNAPSE_VERSION)

        main = self.section("main")
        redis = self.section("redis")
        database = self.section("database")
        proxy = self.section("proxy")
        if proxy.get("address") is not None:
            self.address("proxy.address", proxy["address"])
        main_host = main.get("host")
        if not isinstance(main_host, str) or not main_host:
            self.error("main.host", "must name the inventory host of the main process")
            main_host = "main"
        hosts = self.hosts(main_host, main)
        main_address = self.address("main.address", main.get("address", hosts.get(main_host)))
        client_port = self.port("main.client_port", main["client_port"])
        replication_port = self.port("main.replication_port", main["replication_port"])
        client_bind = main.get("client_bind") or main_address
        self.metrics = wish.get("metrics", False)
        if not isinstance(self.metrics, bool):
            self.error("metrics", "must be true or false, got %r" % (self.metrics,))
            self.metrics = False
        metrics_port = self.port("main.metrics_port", main["metrics_port"]) if self.metrics else None
        base = wish.get("worker_port_base", DEFAULTS["worker_port_base"])
        if not _is_int(base) or not 1024 <= base <= 65000:
            self.error("worker_port_base", "must be an integer between 1024 and 65000, got %s" % _got(base))
            base = DEFAULTS["worker_port_base"]

        for key in ("cp_min", "cp_max", "reserve"):
            if not _is_int(database[key]) or database[key] < (1 if key != "reserve" else 0):
                self.error("database.%s" % key, "must be a positive integer, got %s" % _got(database[key]))
                database[key] = DEFAULTS["database"][key]
        raw_database = wish.get("database") if isinstance(wish.get("database"), dict) else {}
        if database["cp_min"] > database["cp_max"] and raw_database.get("cp_min") is None:
            # Only cp_max was given, below the default minimum: the pool opens at most cp_max.
            database["cp_min"] = database["cp_max"]
        elif database["cp_min"] > database["cp_max"]:
            self.error("database.cp_min", "must not exceed database.cp_max (%d > %d)"
                       % (database["cp_min"], database["cp_max"]))

        extra = wish.get("extra_config") or {}
        if not isinstance(extra, dict):
            self.error("extra_config", "must be a mapping of Synapse settings")
            extra = {}
        self.check_extra_keys("extra_config", extra)

        # A sizing profile adds its worker entries; the operator's own entries win (profiles.py).
        self.workers_wish, layout, errors = profiles.resolve(wish.get("profile"), wish.get("sizing"),
                                                             wish.get("workers") if wish.get("workers") is not None
                                                             else {})
        for field, message in errors:
            self.error(field, message)
        tuning = wish.get("tuning", True)
        if not isinstance(tuning, bool):
            self.error("tuning", "must be true or false, got %r" % (tuning,))
            tuning = True
        main_limits = self.limits("main.limits", main.get("limits"))

        groups = self.normalise_workers(hosts, main_host)
        apply_placement(wish.get("placement"), groups, hosts, self.worker_hosts, main_host,
                        bool(wish.get("exclusive_hosts")), self.error)
        check_addresses(self.endpoints(main_host, main_address, hosts, redis, database, proxy), self.error)
        self.check_type_totals(groups)
        self.check_version(version, groups)
        if self.errors:
            raise PlanError(self.errors)

        instances = self.instances(groups, hosts)
        self.check_media_placement(instances)
        self.assign_ports(instances, base, main_host, client_port, replication_port, metrics_port,
                          redis, database, proxy)
        if self.errors:
            raise PlanError(self.errors)

        shared = self.shared_config(instances, main_address, client_bind, client_port,
                                    replication_port, redis, database, hosts, main_host)
        if self.metrics:
            shared["enable_metrics"] = True
            shared["listeners"].append({"type": "metrics", "port": metrics_port, "bind_addresses": [main_address]})
        self.check_writers(shared, instances, version)
        main_tuning = self.tune(tuning, layout, instances, main_host, main_limits, shared, database, extra)
        db_plan = self.database_plan(instances, database)
        if self.errors:
            raise PlanError(self.errors)

        return {
            "synapse_version": str(version_raw),
            "pip_requirements": pip_requirements(str(version_raw)),
            "main": {
                "name": MAIN, "host": main_host, "address": main_address,
                "client_port": client_port, "replication_port": replication_port,
                "health_url": "http://%s:%d/health" % (_url_host(client_bind), client_port),
                "systemd": main_tuning,
            },
            "shared_config": shared,
            "workers": [self.worker_entry(i) for i in instances],
            "ports": self.port_table(instances, main_host, client_port, replication_port, metrics_port),
            "routes": self.routes(instances, main_address, client_port, proxy,
                                  proxy.get("address") or hosts.get(proxy.get("host")) or main_address),
            "database": db_plan,
            "hosts": sorted(set([main_host] + [i["host"] for i in instances])),
            "services": self.services(main_host, main_address, shared, redis, database, proxy, hosts),
            "layout": self.layout_record(layout, instances, main_tuning, database),
        }

    def hosts(self, main_host, main):
        raw = self.wish.get("hosts") or {}
        if not isinstance(raw, dict):
            self.error("hosts", "must be a mapping of inventory host to {address: ...}")
            raw = {}
        hosts = {}
        for name, spec in raw.items():
            address = spec.get("address") if isinstance(spec, dict) else spec
            hosts[name] = self.address("hosts.%s.address" % name, address)
        self.worker_hosts = sorted(hosts)
        if main_host not in hosts:
            hosts[main_host] = main.get("address")
        return hosts

    def services(self, main_host, main_address, shared, redis, database, proxy, hosts):
        """Where Redis, PostgreSQL and the proxy run (host, address, ports): what the firewall needs."""
        proxy_host = proxy.get("host") or main_host
        return {
            "redis": {"host": redis.get("host") or main_host, "address": shared["redis"]["host"],
                      "port": shared["redis"]["port"]},
            "database": {"host": database.get("host") or main_host,
                         "address": shared["database"]["args"]["host"], "port": shared["database"]["args"]["port"]},
            "proxy": {"host": proxy_host, "address": proxy.get("address") or hosts.get(proxy_host) or main_address,
                      "client_port": proxy["client_port"], "federation_port": proxy["federation_port"]},
        }

    def endpoints(self, main_host, main_address, hosts, redis, database, proxy):
        """(field, host, address) of every host the plan names, for the reachability rules."""
        result = [("main.address", main_host, main_address)]
        result += [("hosts.%s.address" % h, h, a) for h, a in sorted(hosts.items()) if h != main_host]
        for key, section in (("redis", redis), ("database", database), ("proxy", proxy)):
            host = section.get("host")
            if host is not None:
                result.append(("%s.address" % key, host, section.get("address") or hosts.get(host)))
        return result

    def instances(self, groups, hosts):
        result = []
        for group in groups:
            names = group["names"] or ["%s%d" % (group["prefix"], i) for i in range(1, group["count"] + 1)]
            for name in names:
                host = group.get("instance_hosts", {}).get(name, group["host"])
                result.append({
                    "name": name, "type": group["kind"], "host": host, "group": group["key"],
                    "address": hosts[host], "config": group["config"], "limits": group["limits"],
                })
        seen = {}
        for inst in result:
            field = "workers.%s" % inst["group"]
            if not _NAME_RE.match(inst["name"]) or inst["name"] in (MAIN, MAIN_WRITER):
                self.error(field, "instance name %r is not allowed: use lower-case letters, digits and _, "
                                  "and not main/master" % inst["name"])
            elif inst["name"] in seen:
                self.error(field, "instance name %r is not unique (also used by workers.%s); rename one"
                           % (inst["name"], seen[inst["name"]]))
            seen.setdefault(inst["name"], inst["group"])
        return result

    def check_type_totals(self, groups):
        """A type's instance limit holds across every entry that runs it, merged ones included."""
        totals = {}
        for group in groups:
            for member in group["kind"].members:
                entry = totals.setdefault(member, [0, []])
                entry[0] += group["count"]
                if group["count"]:
                    entry[1].append(group["key"])
        for member, (total, keys) in sorted(totals.items()):
            row = WORKER_TYPES[member]
            if len(keys) > 1 and row.max_count is not None and total > row.max_count:
                self.error("workers.%s.count" % "/".join(keys),
                           "worker type %r allows at most %d instance(s) (%s), but these entries run %d; "
                           "keep it in one entry" % (member, row.max_count, _why_single(Kind(member, [row])), total))

    def check_media_placement(self, instances):
        """All media workers share one media store: on one host, or on a store every host mounts."""
        media = [i for i in instances if i["type"].worker_config.get("enable_media_repo")]
        media_hosts = sorted(set(i["host"] for i in media))
        if len(media_hosts) > 1 and not self.wish.get("media_store_shared"):
            self.error("workers.%s.host" % "/".join(sorted(set(i["group"] for i in media))),
                       "media workers are placed on several hosts (%s) but Synapse needs them to share "
                       "one media store; put them on one host, or mount one store on every media host "
                       "at the same path and set media_store_shared: true" % ", ".join(media_hosts))

    def assign_ports(self, instances, base, main_host, client_port, replication_port, metrics_port,
                     redis, database, proxy):
        """Give every instance an HTTP port (and a replication port if it writes a stream),
        counting up from ``base`` per host; refuse any clash with another listener."""
        taken = {}

        def reserve(host, port, owner, field):
            if port is None:
                return
            other = taken.get((host, port))
            if other:
                self.error(field, "port %d on host %s is already used by %s; choose another port "
                                  "or move worker_port_base" % (port, host, other))
            else:
                taken[(host, port)] = owner

        reserve(main_host, client_port, "main (client listener)", "main.client_port")
        reserve(main_host, replication_port, "main (replication listener)", "main.replication_port")
        reserve(main_host, metrics_port, "main (metrics listener)", "main.metrics_port")
        redis_host = redis.get("host") or main_host
        db_host = database.get("host") or main_host
        proxy_host = proxy.get("host") or main_host
        reserve(redis_host, self.port("redis.port", redis["port"]), "redis", "redis.port")
        reserve(db_host, self.port("database.port", database["port"]), "postgresql", "database.port")
        reserve(proxy_host, self.port("proxy.client_port", proxy["client_port"]),
                "the proxy (client entrypoint)", "proxy.client_port")
        reserve(proxy_host, self.port("proxy.federation_port", proxy["federation_port"]),
                "the proxy (federation entrypoint)", "proxy.federation_port")

        # Stable ports: every entry of the wish owns a block of ``block`` ports on its host (catalogue
        # types in catalogue order, then merged processes by name), so scaling one entry never
        # moves the ports, and so the configs and routes, of another.
        block = self.wish.get("worker_port_block", DEFAULTS["worker_port_block"])
        if not _is_int(block) or not 1 <= block <= 10000:
            self.error("worker_port_block", "must be an integer from 1 to 10000, got %s" % _got(block))
            return
        merged = sorted(set(i["group"] for i in instances if i["group"] not in WORKER_TYPES))
        slots = dict((key, n) for n, key in enumerate(list(WORKER_TYPES) + merged))
        index, total = {}, Counter((inst["host"], inst["group"]) for inst in instances)
        for inst in instances:
            host, group = inst["host"], inst["group"]
            needs = ["http"] + (["replication"] if inst["type"].streams else []) + \
                (["metrics"] if self.metrics else [])
            k = index.get((host, group), 0)
            index[(host, group)] = k + 1
            if total[(host, group)] * len(needs) > block:
                count = total[(host, group)]
                self.error("workers.%s.count" % group,
                           "%d instances of workers.%s on host %s need %d ports, more than the %d each entry "
                           "has; lower the count, place some of them on other hosts, or set worker_port_block: "
                           "%d or more" % (count, group, host, count * len(needs), block, count * len(needs)))
                return
            first = base + slots[group] * block + k * len(needs)
            if first + len(needs) - 1 > 65535:
                self.error("worker_port_base", "ports of workers.%s on host %s would pass 65535; set a lower "
                           "worker_port_base: (now %d) or worker_port_block: (now %d)" % (group, host, base, block))
                return
            inst["ports"] = {}
            for offset, kind in enumerate(needs):
                inst["ports"][kind] = first + offset
                reserve(host, first + offset, "worker %s (%s listener)" % (inst["name"], kind), "worker_port_base")

    def listeners(self, inst):
        wtype = inst["type"]
        bind = [inst["address"]]
        resources = list(wtype.resources) or ["health"]
        listeners = [{
            "type": "http", "port": inst["ports"]["http"], "bind_addresses": bind,
            "x_forwarded": True, "resources": [{"names": resources, "compress": False}],
        }]
        if "replication" in inst["ports"]:
            listeners.append({
                "type": "http", "port": inst["ports"]["replication"], "bind_addresses": bind,
                "resources": [{"names": ["replication"], "compress": False}],
            })
        if "metrics" in inst["ports"]:
            listeners.append({"type": "metrics", "port": inst["ports"]["metrics"], "bind_addresses": bind})
        return listeners

    def worker_entry(self, inst):
        wtype = inst["type"]
        config = {
            "worker_app": GENERIC_APP,
            "worker_name": inst["name"],
            "worker_listeners": self.listeners(inst),
            "worker_log_config": "%s/log/%s.yaml" % (self.wish.get("config_dir") or DEFAULTS["config_dir"],
                                                     inst["name"]),
        }
        config.update(wtype.worker_config)
        config.update(inst.get("tuned_config", {}))
        config.update(inst["config"])
        return {
            "name": inst["name"],
            "type": wtype.name,
            "types": list(wtype.members),
            "host": inst["host"],
            "address": inst["address"],
            "unit": "matrix-synapse-worker@%s.service" % inst["name"],
            "ports": dict(inst["ports"]),
            "health_url": "http://%s:%d/health" % (_url_host(inst["address"]), inst["ports"]["http"]),
            "restart_scope": wtype.restart,
            "streams": list(wtype.streams),
            "systemd": dict(inst["limits"]),
            "config": config,
        }

    def shared_config(self, instances, main_address, client_bind, client_port, replication_port,
                      redis, database, hosts, main_host):
        shared = {
            "listeners": [
                {"type": "http", "port": client_port, "bind_addresses": [client_bind], "x_forwarded": True,
                 "resources": [{"names": ["client", "federation"], "compress": False}]},
                {"type": "http", "port": replication_port, "bind_addresses": [main_address],
                 "resources": [{"names": ["replication"], "compress": False}]},
            ],
            "redis": {
                "enabled": True,
                "host": redis.get("address") or hosts.get(redis.get("host")) or main_address,
                "port": redis["port"],
            },
            "database": {
                "name": "psycopg2",
                "args": {
                    "host": database.get("address") or hosts.get(database.get("host")) or main_address,
                    "port": database["port"], "dbname": database["name"], "user": database["user"],
                    "cp_min": database["cp_min"], "cp_max": database["cp_max"],
                },
            },
            "enable_media_repo": True,
        }
        if not instances:
            return shared
        instance_map = {MAIN: {"host": main_address, "port": replication_port}}
        writers = {}
        duties = {}
        for inst in instances:
            wtype = inst["type"]
            if wtype.streams:
                instance_map[inst["name"]] = {"host": inst["address"], "port": inst["ports"]["replication"]}
                for stream in wtype.streams:
                    writers.setdefault(stream, []).append(inst["name"])
            for duty in wtype.duties:
                duties.setdefault(duty, []).append(inst["name"])
        shared["instance_map"] = instance_map
        # Only streams with writers appear: an omitted stream stays on main, an empty list is
        # a startup error in Synapse (C02).
        writers = dict((s, names) for s, names in writers.items() if names)
        if writers:
            shared["stream_writers"] = writers
        for duty, names in sorted(duties.items()):
            if duty.kind == "list":
                shared[duty.key] = names
            else:
                shared[duty.key] = names[0]
        if any(i["type"].worker_config.get("enable_media_repo") for i in instances):
            shared["enable_media_repo"] = False
        else:
            # Main serves media. Every worker loads the media repository too when the shared
            # config enables it: pin its background jobs (cleanups, previews) to main (C11).
            shared["media_instance_running_background_jobs"] = MAIN_WRITER
        return shared

    def check_writers(self, shared, instances, version):
        """Synapse's cardinality rules per stream, and every writer reachable for replication."""
        by_name = dict((i["name"], i) for i in instances)
        for stream, names in sorted(shared.get("stream_writers", {}).items()):
            rule = STREAMS[stream]
            owners = sorted(set(by_name[n]["group"] for n in names if n in by_name))
            field = "workers.%s.count" % (owners[0] if len(owners) == 1 else "/".join(owners))
            if rule.max_writers is not None and len(names) > rule.max_writers:
                self.error(field, "stream %r allows exactly one writer but the plan has %d (%s in %s); "
                           "give the stream to one instance of one entry" % (stream, len(names), ", ".join(names),
                                                                            ", ".join("workers." + o for o in owners)))
            elif len(names) > 1 and rule.multi_since and version < version_tuple(rule.multi_since):
                self.error(field, "stream %r allows several writers only since Synapse %s; the plan "
                           "targets %s — set the count to 1" % (stream, rule.multi_since, _vstr(version)))
            for name in names:
                if name != MAIN_WRITER and name not in shared["instance_map"]:
                    self.error(field, "writer %r has no instance_map entry" % name)

    def database_plan(self, instances, database):
        processes = 1 + len(instances)
        # Every process's own pool (per-type pools from the tuning, else the shared one).
        pools = [database["cp_max"]] + [inst.get("cp_max", database["cp_max"]) for inst in instances]
        needed = sum(pools) + database["reserve"]
        declared = database.get("max_connections")
        if declared is not None:
            if not _is_int(declared) or declared < 1:
                self.error("database.max_connections", "must be a positive integer, got %s" % _got(declared))
            elif declared < needed:
                self.error("database.max_connections",
                           "PostgreSQL allows %d connections but %d Synapse processes with %s need "
                           "%d (plus a reserve of %d = %d); raise max_connections to at least %d, lower "
                           "database.cp_max, or run fewer workers"
                           % (declared, processes, "cp_max %d" % pools[0] if len(set(pools)) == 1 else
                              "pools of %d to %d connections" % (min(pools), max(pools)), sum(pools),
                              database["reserve"], needed, needed))
        running = database.get("running_max_connections")
        if running is not None and (not _is_int(running) or running < 1):
            self.error("database.running_max_connections",
                       "must be the positive integer PostgreSQL reports (SHOW max_connections), got %r" % (running,))
            running = None
        if declared is not None:
            target = declared
        elif running is not None and running >= needed:
            # Never lowered on its own: a smaller plan keeps what runs, and so does not restart
            # PostgreSQL (a restart drops every Synapse connection).
            target = running
        else:
            # Raised with half again as much headroom, rounded up to fifty (PostgreSQL's own
            # default of 100 is the floor): the next few workers then fit without a restart.
            target = max(100, -(-(needed * 3) // 100) * 50)
        return {
            "processes": processes,
            "cp_min": database["cp_min"],
            "cp_max": database["cp_max"],
            "pools": sum(pools),
            "connections_needed": needed,
            "max_connections": target,
            # What the server runs with now (None: not read, or no server yet), and whether
            # applying the plan restarts PostgreSQL for max_connections.
            "max_connections_running": running,
            "restarts_postgresql": running is not None and target != running,
        }

    def tune(self, enabled, layout, instances, main_host, main_limits, shared, database, extra):
        """Per-process tuning from profiles.TUNING: a PostgreSQL pool, a cache factor and
        systemd resource settings per process, the memory ones scaled to fit the main host.
        Explicit settings win: database.cp_min/cp_max (for every process), extra_config
        caches.global_factor (every process), a worker entry's config database/caches and
        limits (its instances), main.limits. Returns main's systemd settings."""
        raw_db = self.wish.get("database") if isinstance(self.wish.get("database"), dict) else {}
        explicit_pool = any(raw_db.get(k) is not None for k in ("cp_min", "cp_max"))
        extra_caches = extra.get("caches") if isinstance(extra.get("caches"), dict) else {}
        explicit_factor = "global_factor" in extra_caches
        if not enabled:
            layout["reasons"].append("tuning off: Synapse's own defaults, and only the explicit limits")
            for inst in instances:
                inst["tuning"] = None
            return dict(main_limits)
        rows = {MAIN: profiles.TUNING[MAIN]}
        by_kind = {}
        for inst in instances:
            members = inst["type"].members
            if members not in by_kind:
                by_kind[members] = profiles.tuning_for(members)
            rows[inst["name"]] = by_kind[members]
        on_main = [MAIN] + [i["name"] for i in instances if i["host"] == main_host]
        memory = layout["sizing"].get("memory_mb")
        budget = profiles.memory_budget_mb([rows[n] for n in on_main])
        fitted, factor = profiles.fit_memory([rows[n] for n in on_main], memory)
        rows.update(zip(on_main, fitted))
        if factor is None:
            layout["warnings"].append(
                "the main host's %d MB cannot give its %d Synapse processes %d MB each after a %d MB reserve: "
                "memory limits are at that floor; run fewer workers on it or give it more memory"
                % (memory, len(on_main), profiles.PROCESS_FLOOR_MB, profiles.HOST_RESERVE_MB))
        elif factor < 1.0:
            layout["reasons"].append(
                "memory: the %d processes on %s plan %d MB (MemoryHigh summed), the host has %d MB after a %d MB "
                "reserve: their memory settings and cache factors are scaled down to fit (by %.2f, "
                "not below %d MB each)"
                % (len(on_main), main_host, budget, memory - profiles.HOST_RESERVE_MB, profiles.HOST_RESERVE_MB,
                   factor, profiles.PROCESS_FLOOR_MB))
        if not explicit_pool:
            database["cp_min"], database["cp_max"] = rows[MAIN].cp_min, rows[MAIN].cp_max
            shared["database"]["args"].update(cp_min=database["cp_min"], cp_max=database["cp_max"])
        if not explicit_factor:
            shared["caches"] = {"global_factor": rows[MAIN].cache_factor}
        extra_db = extra.get("database") if isinstance(extra.get("database"), dict) else {}
        db_base, caches_base = [], []  # built once: a worker's sections are fresh copies of these
        limits_of = {}
        for inst in instances:
            row = rows[inst["name"]]
            tuned = {}
            own_db = inst["config"].get("database")
            own_args = ((own_db.get("args") or {}) if isinstance(own_db, dict) else {})
            if own_db is not None:
                pool = own_args.get("cp_max")
                inst["cp_max"] = pool if _is_int(pool) else database["cp_max"]
            elif not explicit_pool and (row.cp_min, row.cp_max) != (database["cp_min"], database["cp_max"]):
                # A worker's own file replaces the whole database section: repeat the shared
                # one (and the operator's extra_config.database) with this process's pool.
                if not db_base:
                    db_base.append(_combine(shared["database"], extra_db))
                db = _combine(db_base[0], {}) if extra_db else dict(db_base[0], args=dict(db_base[0]["args"]))
                db["args"].update(cp_min=row.cp_min, cp_max=row.cp_max)
                tuned["database"] = db
                inst["cp_max"] = row.cp_max
            if not explicit_factor and "caches" not in inst["config"] and row.cache_factor != rows[MAIN].cache_factor:
                if not caches_base:
                    caches_base.append(_combine(extra_caches, {}))
                tuned["caches"] = (_combine(caches_base[0], {}) if extra_caches else {})
                tuned["caches"]["global_factor"] = row.cache_factor
            inst["tuned_config"] = tuned
            key = (row, tuple(sorted(inst["limits"].items())))
            if key not in limits_of:
                limits_of[key] = _systemd(row, inst["limits"])
            inst["limits"] = dict(limits_of[key])
            inst["tuning"] = {"class": "+".join(sorted(set(profiles.TYPE_CLASS[m] for m in inst["type"].members))),
                              "cp_min": own_args.get("cp_min") if own_db is not None else
                              (tuned.get("database") or shared["database"])["args"]["cp_min"],
                              "cp_max": inst.get("cp_max", database["cp_max"]),
                              "cache_factor": (tuned.get("caches") or shared.get("caches") or extra_caches)
                              .get("global_factor")}
        self.main_tuning = {"class": "main", "cp_min": database["cp_min"], "cp_max": database["cp_max"],
                            "cache_factor": (shared.get("caches") or extra_caches).get("global_factor")}
        return _systemd(rows[MAIN], main_limits)

    def layout_record(self, layout, instances, main_systemd, database):
        """What the plan reports about its layout: profile, why, the processes and their tuning."""
        counts = {}
        for inst in instances:
            counts[inst["group"]] = counts.get(inst["group"], 0) + 1
        processes = [dict({"name": MAIN, "systemd": main_systemd}, **getattr(self, "main_tuning", {}))]
        for inst in instances:
            processes.append(dict({"name": inst["name"], "systemd": dict(inst["limits"])}, **(inst.get("tuning") or {})))
        shape = ", ".join("%s x%d" % (k, n) for k, n in sorted(counts.items())) or "no workers"
        head = "Layout: main + %d worker(s) (%s)" % (len(instances), shape)
        if layout["profile"]:
            head += ", profile %s%s" % (layout["profile"], " (chosen by auto)" if layout["source"] == "auto" else "")
        summary = [head] + ["  why: %s" % r for r in layout["reasons"]]
        summary += ["  warning: %s" % w for w in layout["warnings"]]
        for proc in processes:
            limits = " ".join("%s=%s" % kv for kv in sorted(proc["systemd"].items()))
            if proc.get("cp_max") is not None:
                summary.append("  %-24s pool %s..%s, cache factor %s, %s" % (
                    proc["name"], proc["cp_min"], proc["cp_max"], proc["cache_factor"], limits or "no limits"))
            else:
                summary.append("  %-24s %s" % (proc["name"], limits or "no limits"))
        return dict(layout, workers=counts, processes=processes, summary=summary)

    def port_table(self, instances, main_host, client_port, replication_port, metrics_port):
        table = [
            {"host": main_host, "port": client_port, "process": MAIN, "listener": "client"},
            {"host": main_host, "port": replication_port, "process": MAIN, "listener": "replication"},
        ]
        if metrics_port:
            table.append({"host": main_host, "port": metrics_port, "process": MAIN, "listener": "metrics"})
        for inst in instances:
            for kind, port in sorted(inst["ports"].items()):
                table.append({"host": inst["host"], "port": port, "process": inst["name"], "listener": kind})
        return sorted(table, key=lambda row: (row["host"], row["port"]))

    def routes(self, instances, main_address, client_port, proxy, proxy_address):
        """The ordered routing table: per endpoint group, the processes of the best-ranked kind
        the plan has among the kinds that can serve it (writers before generic pools)."""
        routes = []
        for group_name in ROUTING_ORDER:
            group = ENDPOINT_GROUPS[group_name]
            ranked = [(_rank(group, inst["type"]), inst) for inst in instances]
            ranked = [(rank, inst) for rank, inst in ranked if rank is not None]
            if not ranked:
                continue
            best = min(rank for rank, _ in ranked)
            servers = [inst for rank, inst in ranked if rank == best]
            routes.append({
                "group": group_name,
                "entrypoints": list(group.entrypoints),
                "methods": list(group.methods),
                "patterns": list(group.patterns),
                "without_query": group.without_query,
                "sticky": group.sticky,
                "worker_type": servers[0]["type"].name,
                "servers": [{"name": i["name"], "address": i["address"], "port": i["ports"]["http"]}
                            for i in servers],
                "main_fallback": group.main_fallback,
            })
        return {
            "main": {"name": MAIN, "address": main_address, "port": client_port},
            "entrypoints": {"client": proxy["client_port"], "federation": proxy["federation_port"]},
            # The homeserver URL for everything running beside Synapse (bridges, bots,
            # integrations, admin scripts): the router, never main's own listener, which
            # cannot serve what moved to workers (media, stream writers' endpoints) (C15).
            "internal_url": "http://%s:%d" % (_url_host(proxy_address), proxy["client_port"]),
            "routes": routes,
        }


def _systemd(row, explicit):
    """systemd settings from a tuning row, the explicit limits winning key by key (and keeping
    MemoryHigh <= MemoryMax when only one of them is explicit)."""
    result = {"MemoryHigh": "%dM" % row.memory_high, "MemoryMax": "%dM" % row.memory_max,
              "CPUWeight": str(row.cpu_weight)}
    result.update(explicit)
    high, top = _bytes(result["MemoryHigh"]), _bytes(result["MemoryMax"])
    if high is not None and top is not None and high > top:
        if "MemoryMax" in explicit and "MemoryHigh" not in explicit:
            result["MemoryHigh"] = result["MemoryMax"]
        elif "MemoryHigh" in explicit and "MemoryMax" not in explicit:
            result["MemoryMax"] = result["MemoryHigh"]
    return result


def _combine(base, override):
    """A deep copy of ``base`` with ``override`` merged in (mappings merge, the rest replaces)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _combine(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _rank(group, kind):
    """Position of the best of ``kind``'s member types in the group's preference, or None."""
    ranks = [group.prefer.index(m) for m in kind.members if m in group.prefer]
    return min(ranks) if ranks else None


def _kind_label(kind):
    if kind.members == (kind.name,):
        return "worker type %r" % kind.name
    return "merged process %r (%s)" % (kind.name, ", ".join(kind.members))


def _bytes(size):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if size == "infinity" or size.endswith("%"):
        return None
    if size[-1] in units:
        return int(size[:-1]) * units[size[-1]]
    return int(size)


def _why_single(kind):
    singles = [d.key for d in kind.duties if d.kind == "single"]
    if singles:
        return "%s names exactly one instance" % " and ".join(singles)
    return "%s must run as one process" % ", ".join(kind.limited_by)


def _vstr(version):
    return ".".join(str(p) for p in version)


def _url_host(address):
    return "[%s]" % address if ":" in address else address


def plan(wish):
    """Compute the plan for ``wish`` (a dict, see the worker_plan module's options)."""
    return _Planner(wish).run()
