"""Sanity checks of the target host itself: the harness must give a real systemd host."""

from __future__ import annotations


def test_systemd_is_pid1(host):
    comm = host.file("/proc/1/comm").content_string.strip()
    assert comm == "systemd"


def test_system_is_running(host):
    # --wait blocks while the state is "initializing"/"starting". The exit status is
    # non-zero for "degraded", so read stdout rather than asserting success.
    state = host.run("timeout 60 systemctl is-system-running --wait").stdout.strip()
    if state != "running":
        failed = host.run("systemctl --failed --no-legend --plain").stdout
        assert state in ("running", "degraded"), f"system state {state!r}; failed units:\n{failed}"


def test_debian_bookworm(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.codename == "bookworm"
