# -*- coding: utf-8 -*-
# Copyright: matrixops.synapse contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which hosts may open which port: the host firewall, computed from the worker plan.

Pure functions. ``host_rules(plan, host, ...)`` returns the TCP ports a host accepts and from
where, least privilege first:

- the proxy's entrypoints: from anywhere;
- main's client listener and the HTTP listeners of workers the proxy routes to: from the
  proxy host only;
- replication listeners (main's and every stream writer's), Redis and PostgreSQL: from the
  hosts running Synapse processes only;
- metrics listeners: only from ``metrics_sources`` (none by default);
- SSH (kept open, from ``ssh_sources`` or anywhere) and the operator's ``extra_rules``.

Everything else arriving on the host is refused. Loopback traffic, which includes a host's
connections to its own private address, is always accepted by the ruleset around these rules.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

ANY = "any"
PROTOCOLS = ("tcp", "udp")


class FirewallError(Exception):
    """Invalid firewall input. ``errors`` is a list of (field, message) pairs."""

    def __init__(self, errors):
        self.errors = list(errors)
        super(FirewallError, self).__init__("; ".join("%s: %s" % e for e in self.errors))


def _network(value):
    """An address or CIDR as a network (host bits allowed: 10.0.0.5/24 means 10.0.0.0/24)."""
    return ipaddress.ip_network(str(value).strip(), strict=False)


def _sources(field, values, errors):
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        errors.append((field, "must be a list of addresses or networks (CIDR), got %r" % (values,)))
        return []
    result = []
    for value in values:
        try:
            result.append(_network(value))
        except ValueError:
            errors.append((field, "%r is not an address or a network such as 10.0.0.0/24; fix or remove it"
                           % (value,)))
    return result


def _port(field, value, errors):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        errors.append((field, "must be a port number from 1 to 65535, got %r" % (value,)))
        return None
    return value


def _rule(port, sources, purpose, protocol="tcp"):
    """One accept rule; ``sources`` is ANY or a list of networks (split per IP version)."""
    rule = {"port": port, "protocol": protocol, "purpose": purpose}
    if sources == ANY:
        rule.update(sources=ANY, ipv4=[], ipv6=[])
        return rule
    nets = sorted(set(sources), key=lambda n: (n.version, n.network_address, n.prefixlen))
    rule["ipv4"] = [str(n) for n in nets if n.version == 4]
    rule["ipv6"] = [str(n) for n in nets if n.version == 6]
    rule["sources"] = rule["ipv4"] + rule["ipv6"]
    return rule


def addresses(plan):
    """Inventory host -> private address of every host running a Synapse process."""
    result = {plan["main"]["host"]: plan["main"]["address"]}
    for worker in plan.get("workers", []):
        result.setdefault(worker["host"], worker["address"])
    return result


def host_rules(plan, host, ssh_port=22, ssh_sources=None, metrics_sources=None, extra_rules=None):
    """The accept rules of ``host`` (an inventory name), sorted by protocol and port.

    Raises FirewallError naming the field and the fix when an input is invalid or two
    rules want one port with different sources.
    """
    errors = []
    synapse = [_network(a) for a in sorted(set(addresses(plan).values()))]
    services = plan.get("services") or {}
    proxy = services.get("proxy") or {}
    proxy_nets = [_network(proxy["address"])] if proxy.get("address") else []
    if not proxy_nets:
        errors.append(("plan.services.proxy.address", "the plan does not say where the proxy runs; "
                       "compute it with matrixops.synapse.worker_plan of this collection version"))
    metrics = _sources("metrics_sources", metrics_sources, errors)
    routed = set(server["name"] for route in plan.get("routes", {}).get("routes", [])
                 for server in route["servers"])

    rules = []
    if proxy.get("host") == host:
        for key in ("client_port", "federation_port"):
            rules.append(_rule(proxy[key], ANY, "proxy %s entrypoint" % key.split("_")[0]))
    for row in plan.get("ports", []):
        if row["host"] != host:
            continue
        process, listener = row["process"], row["listener"]
        what = "%s %s listener" % (process, listener)
        if listener == "replication":
            rules.append(_rule(row["port"], synapse, what + " (Synapse hosts)"))
        elif listener == "metrics":
            if metrics:
                rules.append(_rule(row["port"], metrics, what + " (metrics_sources)"))
        elif process == "main" or process in routed:
            rules.append(_rule(row["port"], proxy_nets, what + " (proxy)"))
        # Other HTTP listeners only answer /health, checked on the host itself.
    for key, label in (("redis", "Redis"), ("database", "PostgreSQL")):
        service = services.get(key) or {}
        if service.get("host") == host:
            rules.append(_rule(service["port"], synapse, "%s (Synapse hosts)" % label))

    port = _port("ssh_port", ssh_port, errors)
    ssh = _sources("ssh_sources", ssh_sources, errors)
    if port is not None:
        rules.append(_rule(port, ssh or ANY, "SSH"))
    for index, extra in enumerate(extra_rules or []):
        field = "extra_rules[%d]" % index
        if not isinstance(extra, dict):
            errors.append((field, "must be a mapping with port, and optionally protocol, sources, purpose"))
            continue
        unknown = sorted(set(extra) - set(("port", "protocol", "sources", "purpose")))
        if unknown:
            errors.append((field, "unknown key(s) %s; allowed: port, protocol, sources, purpose" % ", ".join(unknown)))
        protocol = extra.get("protocol", "tcp")
        if protocol not in PROTOCOLS:
            errors.append((field + ".protocol", "must be tcp or udp, got %r" % (protocol,)))
            continue
        extra_port = _port(field + ".port", extra.get("port"), errors)
        nets = _sources(field + ".sources", extra.get("sources"), errors)
        if extra_port is not None:
            rules.append(_rule(extra_port, nets or ANY, str(extra.get("purpose") or "operator rule"), protocol))

    merged = {}
    for rule in rules:
        key = (rule["protocol"], rule["port"])
        other = merged.get(key)
        if other is None:
            merged[key] = rule
        elif other["sources"] != rule["sources"]:
            errors.append(("%s/%d" % key, "is wanted by %s (from %s) and by %s (from %s); one port can only "
                           "be opened once: move one of them to another port"
                           % (other["purpose"], _describe(other), rule["purpose"], _describe(rule))))
    if errors:
        raise FirewallError(errors)
    return [merged[key] for key in sorted(merged)]


def _describe(rule):
    return "anywhere" if rule["sources"] == ANY else ", ".join(rule["sources"]) or "nowhere"
