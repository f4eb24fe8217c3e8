#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: matrixops.synapse contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: change_plan
short_description: Work out what applying a Synapse worker plan starts, stops and restarts
version_added: 0.2.0
description:
  - Compares the plan about to be applied (the result of M(matrixops.synapse.worker_plan)) with
    the record of the last successful deployment, and the checksums of the Synapse files on
    every host with the ones recorded then.
  - Returns the ordered steps Synapse's rules require (event persisters or other stream
    writers changed restart every process, writers first; federation senders stop together
    before they start; pushers and single-instance duties restart main; a worker's own change
    is a rolling restart, drained at the proxy; an upgrade stops every worker, then main,
    switches to the new release's virtualenv, starts main and then the workers), a readable preview table, the new record and a Mermaid
    picture of the topology.
  - Pure computation; it reads and changes nothing on the host, so it always reports
    C(changed=false) and runs the same in check mode. The playbook acts on the steps.
author:
  - matrixops.synapse contributors
extends_documentation_fragment:
  - matrixops.synapse.pure
options:
  plan:
    description: The plan to apply, as returned by M(matrixops.synapse.worker_plan).
    type: dict
    required: true
  record:
    description:
      - The record returned as RV(record) by the last successful run (read back from the main
        host). Omit, or pass null, when none exists; then every process is (re)started, main first.
    type: dict
  files:
    description:
      - "The Synapse files on each host now: C({host: {path: checksum}}): the shared and per-process
        configuration under O(config_dir), secrets, the signing key and the systemd units, and the
        files staged under O(staging_dir)."
      - A staged file counts at the path it is installed to; the restarts follow from the files as
        they will be once every staged file is installed.
    type: dict
    default: {}
  config_dir:
    description: Synapse's configuration directory on the hosts.
    type: str
    default: /etc/matrix-synapse
  venv:
    description:
      - "The virtualenvs: C({release: path, current: {host: target}}): the plan's release
        virtualenv, and on each host what the virtualenv path the units run from points at
        (a path; an empty string when it is a directory of its own; null when it is absent)."
      - A host whose processes do not run from the release virtualenv is handled like an upgrade
        (stop every worker, then main, switch, start main, then the workers), and so is a
        version change.
    type: dict
  staging_dir:
    description:
      - Where the roles write Synapse's files first, laid out as O(config_dir) (default C(.staged)
        in O(config_dir)). Staged files are installed only after Synapse's parser accepted them.
    type: str
"""

EXAMPLES = r"""
- name: Work out the restarts
  matrixops.synapse.change_plan:
    plan: "{{ synapse_plan }}"
    record: "{{ synapse_deployed_record | default(omit) }}"
    files:
      hs1:
        /etc/matrix-synapse/homeserver.yaml: 0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33
  register: synapse_changes

- name: Show what this run changes
  ansible.builtin.debug:
    msg: "{{ synapse_changes.preview }}"
"""

RETURN = r"""
steps:
  description:
    - Ordered steps. Each has C(action) (stop, start, restart, or switch_venv, which points the
      virtualenv path of the units at the release's while no process runs), C(rolling) (one process at a
      time, drained at the proxy), C(hosts) and C(processes), each with C(name), C(host),
      C(unit), C(health_url) and, for rolling steps, the proxy C(backends) it serves in.
    - Empty when nothing needs to start, stop or restart.
  returned: success
  type: list
  elements: dict
added:
  description: Workers this run adds (or moves to another host).
  returned: success
  type: list
  elements: str
removed:
  description: Workers this run removes (or moves away from their host).
  returned: success
  type: list
  elements: str
reconfigured:
  description: Workers kept whose own configuration, limits or files changed.
  returned: success
  type: list
  elements: str
reasons:
  description: Why each step is needed, in Synapse's terms.
  returned: success
  type: list
  elements: str
upgrade:
  description: C({from, to}) when the Synapse version changes, else null.
  returned: success
  type: dict
install:
  description:
    - "Staged files to install, per host: C({host: [{src, dest}]}): those whose content differs from
      the installed file, or that are new. Staged files of workers the plan does not run on that
      host are never listed."
  returned: success
  type: dict
touched:
  description: Files that changed since the record, by the process they belong to (C(shared), C(main), C(workers)).
  returned: success
  type: dict
preview:
  description:
    - The readable table of the run's changes, one line per list element.
    - Includes a line when the plan raises PostgreSQL's C(max_connections), which restarts it.
  returned: success
  type: list
  elements: str
record:
  description:
    - What to store on the main host once the steps succeeded (format, Synapse version, plan, files).
    - The plan is stored without what PostgreSQL ran with (C(database.max_connections_running),
      C(database.restarts_postgresql)).
  returned: success
  type: dict
mermaid:
  description: A Mermaid flowchart of the planned topology.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.matrixops.synapse.plugins.module_utils.changes import changes


def main():
    module = AnsibleModule(
        argument_spec=dict(
            plan=dict(type="dict", required=True),
            record=dict(type="dict"),
            files=dict(type="dict", default={}),
            config_dir=dict(type="str", default="/etc/matrix-synapse"),
            staging_dir=dict(type="str"),
            venv=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = changes(p["record"] or None, p["plan"], p["files"], p["config_dir"], p["staging_dir"], p["venv"])
    result.pop("changed")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
