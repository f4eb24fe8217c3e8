#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: matrixops.synapse contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: firewall_rules
short_description: Compute one host's firewall rules from a Synapse worker plan
version_added: 0.1.0
description:
  - Works out which TCP ports a host of a Synapse deployment accepts and from which addresses,
    from the plan computed by M(matrixops.synapse.worker_plan).
  - The proxy's entrypoints are open to anyone. Main's client listener and the HTTP listeners of
    workers the proxy routes to accept the proxy host only. Replication listeners, Redis and
    PostgreSQL accept the hosts running Synapse processes only. Metrics listeners accept
    O(metrics_sources) only. SSH stays open.
  - Pure computation; it reads and changes nothing on the host, so it always reports
    C(changed=false) and runs the same in check mode. The role C(matrixops.synapse.firewall)
    turns the result into an nftables table.
author:
  - matrixops.synapse contributors
extends_documentation_fragment:
  - matrixops.synapse.pure
options:
  plan:
    description: The result of M(matrixops.synapse.worker_plan) (its registered variable).
    type: dict
    required: true
  host:
    description: Inventory name of the host to compute the rules of.
    type: str
    required: true
  ssh_port:
    description: Port of the SSH server, kept open.
    type: int
    default: 22
  ssh_sources:
    description: Addresses or networks (CIDR) allowed to reach SSH. Empty allows anyone.
    type: list
    elements: str
    default: []
  metrics_sources:
    description:
      - Addresses or networks (CIDR) allowed to reach the metrics listeners (a Prometheus
        server). Empty keeps them closed to other hosts.
    type: list
    elements: str
    default: []
  extra_rules:
    description:
      - More ports to open on this host, each a mapping with C(port), C(protocol) (C(tcp) or
        C(udp), default C(tcp)), C(sources) (addresses or networks; empty or missing allows
        anyone) and C(purpose) (a comment).
    type: list
    elements: dict
    default: []
"""

EXAMPLES = r"""
- name: Compute this host's firewall rules
  matrixops.synapse.firewall_rules:
    plan: "{{ synapse_plan }}"
    host: "{{ inventory_hostname }}"
    ssh_sources: [192.0.2.0/24]
  register: firewall_rules
"""

RETURN = r"""
rules:
  description:
    - The ports this host accepts, sorted by protocol and port. Each has C(port), C(protocol),
      C(purpose), C(sources) (C(any), or the list of networks), and the sources split per IP
      version in C(ipv4) and C(ipv6).
  returned: success
  type: list
  elements: dict
  sample:
    - {port: 5432, protocol: tcp, purpose: "PostgreSQL (Synapse hosts)", sources: [10.0.0.10/32, 10.0.0.11/32],
       ipv4: [10.0.0.10/32, 10.0.0.11/32], ipv6: []}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.matrixops.synapse.plugins.module_utils.firewall import FirewallError, host_rules


def main():
    module = AnsibleModule(
        argument_spec=dict(
            plan=dict(type="dict", required=True),
            host=dict(type="str", required=True),
            ssh_port=dict(type="int", default=22),
            ssh_sources=dict(type="list", elements="str", default=[]),
            metrics_sources=dict(type="list", elements="str", default=[]),
            extra_rules=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        rules = host_rules(p["plan"], p["host"], ssh_port=p["ssh_port"], ssh_sources=p["ssh_sources"],
                           metrics_sources=p["metrics_sources"], extra_rules=p["extra_rules"])
    except FirewallError as exc:
        module.fail_json(msg="Invalid firewall input for host %s: %s" % (p["host"], exc),
                         errors=[{"field": f, "message": m} for f, m in exc.errors])
    module.exit_json(changed=False, rules=rules)


if __name__ == "__main__":
    main()
