#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: matrixops.synapse contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: worker_plan
short_description: Plan a Synapse workers deployment
version_added: 0.1.0
description:
  - Turns an operator's worker wish (worker types and counts, where main, Redis and PostgreSQL
    are) into every Synapse process's configuration, the configuration shared by all of them,
    the port assignment, the reverse proxy's routing table and the database sizing.
  - Pure computation; it reads and changes nothing on the host, so it always reports
    C(changed=false) and runs the same in check mode.
  - Invalid input fails with every problem found, each naming the field and the fix.
author:
  - matrixops.synapse contributors
extends_documentation_fragment:
  - matrixops.synapse.pure
options:
  synapse_version:
    description:
      - Synapse version the plan targets. Worker types and stream writers newer than it are refused.
      - Defaults to the version this collection pins.
    type: str
  workers:
    description:
      - Worker types to run, each mapped to a count or to a mapping with C(count), C(host)
        (inventory host to place the instances on, default the main host) and C(config)
        (extra settings for each instance's own config file).
      - Types not listed run no instance (their work stays on main), unless O(profile) adds them.
      - Anything but a mapping is refused by the planner with the field named (not converted).
    type: raw
    default: {}
  profile:
    description:
      - A sizing profile that adds a whole worker layout to O(workers). C(monolith) (main only),
        C(small) (main + 1 synchrotron), C(medium) (2 synchrotrons, a client reader, a federation
        sender), C(large) (a full split), or C(auto), which picks one of them from O(sizing).
      - An entry of O(workers) for a type (or a merged entry running it) replaces the profile's
        entry for that type; C(0) removes it.
      - Any other value is refused with the list of valid profiles.
      - The tables and the measurements behind them are in C(plugins/module_utils/profiles.py)
        and C(docs/benchmarks.md).
    type: str
  sizing:
    description:
      - Facts about the main host and its load, for O(profile=auto) and for fitting memory
        limits to the host.
      - C(cores) (required by C(auto)), C(memory_mb) (the main host's memory; memory limits and
        cache factors of the processes on it are scaled down when their budget does not fit)
        and C(expected_users) (without it C(auto) takes the biggest layout the host can run).
    type: dict
    default: {}
  tuning:
    description:
      - Give every process a PostgreSQL pool, a cache factor (C(caches.global_factor)) and
        systemd C(MemoryHigh), C(MemoryMax) and C(CPUWeight) from its worker type's row of the
        tuning table.
      - Explicit settings win. O(database) C(cp_min)/C(cp_max) set the pool of every process,
        O(extra_config) C(caches.global_factor) the cache factor of every process, a worker
        entry's C(limits) and C(config) (C(database), C(caches)) those of its instances, and
        C(main.limits) main's systemd settings.
    type: bool
    default: true
  main:
    description: The main process.
    type: dict
    required: true
    suboptions:
      host:
        description: Inventory name of the host running main.
        type: str
        required: true
      address:
        description: Private address other processes use to reach main. Never a wildcard.
        type: str
        required: true
      client_port:
        description: Port of main's client/federation listener.
        type: int
        default: 8008
      replication_port:
        description: Port of main's replication listener (never exposed through the proxy).
        type: int
        default: 9093
      client_bind:
        description: Address main's client listener binds to (default I(address)).
        type: str
      limits:
        description:
          - "Main's systemd resource settings, as for workers: C(memory_high), C(memory_max),
            C(cpu_weight), C(cpu_quota). They win over the tuning's."
        type: dict
  hosts:
    description: "Inventory hosts that may run workers, each mapped to C({address: ...})."
    type: dict
    default: {}
  placement:
    description:
      - "Worker placement by host: C({host: [entry or instance name, ...]}). An entry of
        O(workers) listed on a host runs all its instances there; an instance name (for example
        C(synchrotron2)) places that one instance. Hosts mapped to nothing are ignored."
      - Entries placed nowhere run on the host their own C(host) names, else on main's host.
        Placing one entry or instance on two hosts, on a host that is not in O(hosts), or
        against its own C(host) is refused.
      - C(playbooks/site.yml) fills it from each inventory host's C(synapse_worker_placement).
    type: dict
    default: {}
  exclusive_hosts:
    description:
      - Workers run only on the hosts of O(hosts); main's host too only when it is listed there.
        C(playbooks/site.yml) sets it and passes the C(synapse_workers) group as O(hosts).
    type: bool
    default: false
  worker_port_base:
    description: First port given to workers on each host; ports count up from it.
    type: int
    default: 18100
  worker_port_block:
    description:
      - Ports each entry of O(workers) owns on its host, from O(worker_port_base) on (catalogue
        types in catalogue order, then merged processes by name). Scaling one entry never moves
        the ports of another. Raise it for more instances of one entry on one host.
    type: int
    default: 100
  config_dir:
    description: Directory holding Synapse's configuration on the hosts.
    type: str
    default: /etc/matrix-synapse
  redis:
    description: Where Redis runs (C(host) inventory name, C(address), C(port)).
    type: dict
    default: {}
  database:
    description:
      - PostgreSQL connection facts (C(host), C(address), C(port), C(name), C(user)) and pool
        sizing (C(cp_min), C(cp_max), C(reserve)).
      - Set C(max_connections) when the database is not managed by this collection, to have
        a plan that would exhaust it refused. It is then used as it is.
      - Otherwise give C(running_max_connections), what the server runs with now (C(SHOW
        max_connections)), when it runs. The plan keeps it while it covers what the processes
        need, so a smaller plan or a few more workers never restart PostgreSQL, and raises it
        to half again as much as needed (rounded up to fifty, at least 100) when it does not.
    type: dict
    default: {}
  proxy:
    description:
      - Where the routing proxy runs (C(host), and C(address), the private address other
        services on the network reach it on) and its C(client_port) and C(federation_port).
      - The result's C(routes.internal_url) is built from them. It is the homeserver URL to
        give bridges, bots and other services that run beside Synapse.
    type: dict
    default: {}
  extra_config:
    description:
      - Settings the operator adds to the shared configuration. Checked for keys Synapse removed
        and keys the planner owns. Anything but a mapping is refused by the planner.
    type: raw
    default: {}
  metrics:
    description: Give main and every worker a metrics listener (and set C(enable_metrics)).
    type: bool
    default: false
  allow_experimental:
    description: Allow worker types Synapse marks experimental (the thread subscriptions writer).
    type: bool
    default: false
  media_store_shared:
    description:
      - Declare that every host running media workers mounts one shared media store at the same
        path. Without it, media workers placed on several hosts are refused.
    type: bool
    default: false
  field_names:
    description:
      - "How the operator names the options in error messages: C({planner field: variable}), for
        example C({workers: synapse_workers, main.limits: synapse_main_limits}). The longest
        matching field wins; fields not listed keep their option names."
      - C(playbooks/site.yml) maps every option it fills from an inventory variable, so errors
        name the variable to fix.
    type: dict
    default: {}
notes:
  - Secrets are not inputs; roles merge them into the rendered files.
"""

EXAMPLES = r"""
- name: Plan four synchrotrons, two event persisters and a media worker
  matrixops.synapse.worker_plan:
    main:
      host: synapse1
      address: 10.0.0.10
    workers:
      synchrotron: 4
      event_persister: 2
      media_repository: 1
      federation_sender: {count: 2, host: synapse2}
    hosts:
      synapse2: {address: 10.0.0.11}
    redis: {host: synapse1, address: 10.0.0.10}
    database: {host: synapse1, address: 10.0.0.10, cp_max: 10}
  register: synapse_plan

- name: Let the planner pick the layout for a 2-core, 4 GB main host and 800 users, with a media worker
  matrixops.synapse.worker_plan:
    main: {host: synapse1, address: 10.0.0.10}
    profile: auto
    sizing: {cores: 2, memory_mb: 4096, expected_users: 800}
    workers:
      media_repository: 1
  register: synapse_plan
"""

RETURN = r"""
synapse_version:
  description: Synapse version the plan targets (install this version).
  returned: success
  type: str
  sample: 1.163.2
pip_requirements:
  description:
    - What pip installs into Synapse's virtualenv on every Synapse host, Synapse itself first,
      then the caps of dependencies that the targeted release needs but does not declare.
  returned: success
  type: list
  elements: str
  sample: ["matrix-synapse[postgres,redis]==1.162.0", "txredisapi<1.6.0"]
main:
  description: The main process (name, host, address, ports, health URL).
  returned: success
  type: dict
shared_config:
  description:
    - Settings for the shared config read by every process (homeserver.yaml), without secrets
      (listeners of main, instance_map, stream_writers, duty keys, redis, database, media).
  returned: success
  type: dict
workers:
  description:
    - One entry per worker instance, with its name, type, host, address, unit, ports, health URL,
      restart scope, streams written and its own config file's content.
  returned: success
  type: list
  elements: dict
ports:
  description: Every listener of every process, per host, sorted by port.
  returned: success
  type: list
  elements: dict
routes:
  description:
    - "The routing table for the proxy, main's upstream and the entrypoint ports. Routes are
      ordered: the first route whose method and pattern match wins; unmatched requests go to main."
    - "C(internal_url) is the router's client entrypoint on the proxy's private address: the
      homeserver URL for services beside Synapse (never main's own listener)."
  returned: success
  type: dict
database:
  description:
    - Number of processes, pool sizes, the connections they need (C(connections_needed)) and the
      PostgreSQL C(max_connections) to set.
    - C(max_connections_running) is the given C(running_max_connections) (or null), and
      C(restarts_postgresql) says whether applying the plan changes it, which restarts PostgreSQL.
  returned: success
  type: dict
hosts:
  description: Inventory hosts that run at least one Synapse process.
  returned: success
  type: list
  elements: str
services:
  description:
    - Where Redis, PostgreSQL and the proxy run (C(host), C(address)) and their ports, as used by
      M(matrixops.synapse.firewall_rules).
  returned: success
  type: dict
layout:
  description:
    - The layout the plan chose and why. C(requested) is the O(profile) given, C(profile) the one
      used (C(auto) resolved), C(source) C(workers), C(profile) or C(auto), C(reasons) and
      C(warnings) explain it, C(workers) counts the instances per entry, C(processes) lists
      every process with its pool, cache factor and systemd settings, and C(summary) is all of
      it as lines to print.
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError, plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            synapse_version=dict(type="str"),
            workers=dict(type="raw", default={}),
            profile=dict(type="str"),
            sizing=dict(type="dict", default={}),
            tuning=dict(type="bool", default=True),
            main=dict(type="dict", required=True, options=dict(
                host=dict(type="str", required=True),
                address=dict(type="str", required=True),
                client_port=dict(type="int", default=8008),
                replication_port=dict(type="int", default=9093),
                client_bind=dict(type="str"),
                limits=dict(type="dict"),
            )),
            hosts=dict(type="dict", default={}),
            placement=dict(type="dict", default={}),
            exclusive_hosts=dict(type="bool", default=False),
            worker_port_base=dict(type="int", default=18100),
            worker_port_block=dict(type="int", default=100),
            config_dir=dict(type="str", default="/etc/matrix-synapse"),
            redis=dict(type="dict", default={}),
            database=dict(type="dict", default={}),
            proxy=dict(type="dict", default={}),
            extra_config=dict(type="raw", default={}),
            metrics=dict(type="bool", default=False),
            allow_experimental=dict(type="bool", default=False),
            media_store_shared=dict(type="bool", default=False),
            field_names=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    wish = dict(module.params)
    names = wish.pop("field_names") or {}
    try:
        result = plan(wish)
    except PlanError as exc:
        exc = exc.renamed(names)
        module.fail_json(msg="Invalid Synapse worker plan: " + exc.format(),
                         errors=[{"field": f, "message": m} for f, m in exc.errors])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
