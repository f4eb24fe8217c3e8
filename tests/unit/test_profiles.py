"""Sizing profiles and per-process tuning (plugins/module_utils/profiles.py, planner hooks)."""
import pytest

from ansible_collections.matrixops.synapse.plugins.module_utils import profiles
from ansible_collections.matrixops.synapse.plugins.module_utils.catalog import WORKER_TYPES
from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
from helpers import planned, worker

TWO_CORES = {"cores": 2, "memory_mb": 4096}


def counts(result):
    return result["layout"]["workers"]


def error_fields(exc):
    return [field for field, _ in exc.errors]


# --------------------------------------------------------------------------- tables

def test_every_worker_type_has_a_tuning_class():
    assert set(profiles.TYPE_CLASS) == set(WORKER_TYPES)
    assert set(profiles.TYPE_CLASS.values()) | {"main"} == set(profiles.TUNING)


def test_profiles_only_name_catalogue_types_and_plan():
    for profile in profiles.PROFILES.values():
        assert set(profile.workers) <= set(WORKER_TYPES), profile.name
        result = planned({}, profile=profile.name)
        assert counts(result) == dict((k, v) for k, v in profile.workers.items() if v), profile.name


def test_profile_names_listed_from_fewest_cores():
    assert profiles.PROFILE_NAMES == ("auto", "monolith", "small", "medium", "large")


# --------------------------------------------------------------------------- profile -> counts

@pytest.mark.parametrize("name, expected", [
    ("monolith", {}),
    ("small", {"synchrotron": 1}),
    ("medium", {"synchrotron": 2, "client_reader": 1, "federation_sender": 1}),
])
def test_named_profile_gives_its_counts(name, expected):
    result = planned({}, profile=name)
    assert counts(result) == expected
    assert result["layout"]["profile"] == name and result["layout"]["source"] == "profile"
    assert len(result["workers"]) == sum(expected.values())


def test_no_profile_keeps_the_wish_as_given():
    result = planned({"synchrotron": 2})
    assert counts(result) == {"synchrotron": 2}
    assert result["layout"]["profile"] is None and result["layout"]["source"] == "workers"


@pytest.mark.parametrize("sizing, profile", [
    ({"cores": 1, "memory_mb": 4096}, "monolith"),
    ({"cores": 2, "memory_mb": 4096}, "small"),
    ({"cores": 3, "memory_mb": 4096}, "small"),
    ({"cores": 4, "memory_mb": 8192}, "medium"),
    ({"cores": 8, "memory_mb": 16384}, "large"),
    ({"cores": 64}, "large"),                                   # memory unknown: cores decide
    ({"cores": 8, "memory_mb": 2048}, "medium"),                # large's 13 processes do not fit
    ({"cores": 2, "memory_mb": 1024}, "monolith"),              # 768 MB reserve + 2 x 256 MB > 1 GB
])
def test_auto_without_users_takes_the_biggest_layout_the_host_runs(sizing, profile):
    result = planned({}, profile="auto", sizing=sizing)
    assert result["layout"]["profile"] == profile, result["layout"]["reasons"]
    assert result["layout"]["source"] == "auto"
    assert result["layout"]["reasons"][0].startswith("auto chose %s" % profile)


def test_auto_on_two_cores_is_main_plus_one_synchrotron():
    """The measured best layout on 2 cores (50 msg/s against 24 for the monolith, 28 for six processes)."""
    result = planned({}, profile="auto", sizing=TWO_CORES)
    assert counts(result) == {"synchrotron": 1}
    text = "\n".join(result["layout"]["summary"])
    assert "50 msg/s" in text and "medium: needs 4 cores, the main host has 2" in text


@pytest.mark.parametrize("users, profile", [
    (0, "monolith"),
    (profiles.capacity_users(profiles.PROFILES["monolith"]), "monolith"),
    (profiles.capacity_users(profiles.PROFILES["monolith"]) + 1, "small"),
    (profiles.capacity_users(profiles.PROFILES["small"]) + 1, "medium"),
    (profiles.capacity_users(profiles.PROFILES["medium"]) + 1, "large"),
])
def test_auto_with_users_takes_the_smallest_layout_that_serves_them(users, profile):
    result = planned({}, profile="auto", sizing={"cores": 16, "memory_mb": 65536, "expected_users": users})
    assert result["layout"]["profile"] == profile
    assert result["layout"]["warnings"] == []


def test_auto_warns_when_the_host_is_too_small_for_the_users():
    result = planned({}, profile="auto", sizing={"cores": 2, "memory_mb": 4096, "expected_users": 100000})
    assert result["layout"]["profile"] == "small"
    assert len(result["layout"]["warnings"]) == 1 and "100000 expected users" in result["layout"]["warnings"][0]


def test_capacity_follows_the_load_model():
    # 24 msg/s at 50 % headroom, 0.02 msg/s per user
    assert profiles.capacity_users(profiles.PROFILES["monolith"]) == 600
    assert profiles.capacity_users(profiles.PROFILES["small"]) == 1250


# --------------------------------------------------------------------------- explicit counts win

def test_explicit_count_replaces_the_profiles_entry():
    result = planned({"synchrotron": 3, "pusher": 1}, profile="medium")
    assert counts(result) == {"synchrotron": 3, "client_reader": 1, "federation_sender": 1, "pusher": 1}
    assert any("workers.synchrotron given explicitly" in r for r in result["layout"]["reasons"])


def test_explicit_zero_removes_a_profile_type():
    result = planned({"client_reader": 0}, profile="medium")
    assert counts(result) == {"synchrotron": 2, "federation_sender": 1}


def test_merged_entry_replaces_the_profile_entry_of_its_types():
    result = planned({"sync_and_reads": {"types": ["synchrotron", "client_reader"], "count": 2}}, profile="medium")
    assert counts(result) == {"sync_and_reads": 2, "federation_sender": 1}


def test_auto_choice_plus_explicit_entries():
    result = planned({"media_repository": 1, "synchrotron": {"count": 2, "name": "sync"}}, profile="auto",
                     sizing=TWO_CORES)
    assert result["layout"]["profile"] == "small"
    assert counts(result) == {"media_repository": 1, "synchrotron": 2}
    assert [w["name"] for w in result["workers"]] == ["media_repository1", "sync1", "sync2"]


# --------------------------------------------------------------------------- refusals

def test_unknown_profile_is_refused_with_the_valid_ones():
    with pytest.raises(PlanError) as err:
        planned({}, profile="huge")
    assert error_fields(err.value) == ["profile"]
    assert "unknown profile 'huge'; valid profiles: auto, monolith, small, medium, large" in err.value.format()


def test_auto_needs_the_cores():
    with pytest.raises(PlanError) as err:
        planned({}, profile="auto", sizing={"memory_mb": 4096})
    assert error_fields(err.value) == ["sizing.cores"]


@pytest.mark.parametrize("sizing, field", [
    ({"cores": 0}, "sizing.cores"),
    ({"cores": "2"}, "sizing.cores"),
    ({"cores": 2, "memory_mb": -1}, "sizing.memory_mb"),
    ({"cores": 2, "expected_users": -5}, "sizing.expected_users"),
    ({"cores": 2, "threads": 4}, "sizing.threads"),
    ("2 cores", "sizing"),
])
def test_bad_sizing_is_refused(sizing, field):
    with pytest.raises(PlanError) as err:
        planned({}, profile="auto", sizing=sizing)
    assert field in error_fields(err.value)


def test_tuning_must_be_a_boolean():
    with pytest.raises(PlanError) as err:
        planned({}, tuning="yes")
    assert error_fields(err.value) == ["tuning"]


# --------------------------------------------------------------------------- tuning

def test_tuning_values_per_type():
    result = planned({"synchrotron": 1, "pusher": 1, "background": 1, "event_persister": 1})
    shared = result["shared_config"]
    assert shared["caches"] == {"global_factor": 1.0}
    assert shared["database"]["args"]["cp_min"] == 5 and shared["database"]["args"]["cp_max"] == 10
    assert result["main"]["systemd"] == {"MemoryHigh": "1024M", "MemoryMax": "1536M", "CPUWeight": "100"}

    sync = worker(result, "synchrotron1")
    assert sync["systemd"] == {"MemoryHigh": "768M", "MemoryMax": "1024M", "CPUWeight": "100"}
    assert "database" not in sync["config"] and "caches" not in sync["config"]  # same as the shared ones

    pusher = worker(result, "pusher1")
    assert pusher["systemd"] == {"MemoryHigh": "384M", "MemoryMax": "768M", "CPUWeight": "50"}
    assert pusher["config"]["caches"] == {"global_factor": 0.25}
    assert pusher["config"]["database"]["args"]["cp_min"] == 2 and pusher["config"]["database"]["args"]["cp_max"] == 5
    # the rest of the database section repeats the shared one (the worker file replaces it whole)
    args = dict(pusher["config"]["database"]["args"])
    assert dict(args, cp_min=5, cp_max=10) == shared["database"]["args"]
    assert pusher["config"]["database"]["name"] == "psycopg2"

    background = worker(result, "background1")
    assert background["systemd"]["CPUWeight"] == "20"
    persister = worker(result, "event_persister1")
    assert persister["config"]["caches"] == {"global_factor": 0.5} and "database" not in persister["config"]

    # max_connections counts every process's own pool: main 10 + sync 10 + pusher 5 + bg 5 + persister 10
    assert result["database"]["pools"] == 40
    assert result["database"]["connections_needed"] == 40 + 20


def test_merged_process_takes_the_largest_of_its_members():
    result = planned({"misc": {"types": ["pusher", "typing_persister", "synchrotron"]}})
    misc = worker(result, "misc1")
    assert misc["systemd"] == {"MemoryHigh": "768M", "MemoryMax": "1024M", "CPUWeight": "100"}


def test_explicit_limits_win_key_by_key_and_keep_high_below_max():
    result = planned({"synchrotron": {"count": 1, "limits": {"memory_max": "512M"}},
                      "pusher": {"count": 1, "limits": {"cpu_weight": 300, "memory_high": "2G"}}},
                     main={"limits": {"cpu_quota": "150%"}})
    assert worker(result, "synchrotron1")["systemd"] == {"MemoryHigh": "512M", "MemoryMax": "512M", "CPUWeight": "100"}
    assert worker(result, "pusher1")["systemd"] == {"MemoryHigh": "2G", "MemoryMax": "2G", "CPUWeight": "300"}
    assert result["main"]["systemd"] == {"MemoryHigh": "1024M", "MemoryMax": "1536M", "CPUWeight": "100",
                                         "CPUQuota": "150%"}


def test_explicit_pool_sizes_apply_to_every_process():
    result = planned({"pusher": 1, "synchrotron": 2}, database={"cp_min": 3, "cp_max": 7})
    assert result["shared_config"]["database"]["args"]["cp_max"] == 7
    assert all("database" not in w["config"] for w in result["workers"])
    assert result["database"]["pools"] == 4 * 7


def test_explicit_cache_factor_applies_to_every_process():
    result = planned({"pusher": 1}, extra_config={"caches": {"global_factor": 2.0}})
    assert "caches" not in result["shared_config"]  # the role merges extra_config over it
    assert "caches" not in worker(result, "pusher1")["config"]


def test_extra_cache_settings_are_kept_in_a_workers_own_caches():
    result = planned({"pusher": 1}, extra_config={"caches": {"per_cache_factors": {"get_users_who_share_room_with_user": 2}}})
    assert worker(result, "pusher1")["config"]["caches"] == {
        "per_cache_factors": {"get_users_who_share_room_with_user": 2}, "global_factor": 0.25}


def test_worker_entry_config_wins_over_tuning():
    result = planned({"pusher": {"count": 1, "config": {"caches": {"global_factor": 3.0}}}})
    assert worker(result, "pusher1")["config"]["caches"] == {"global_factor": 3.0}


def test_memory_settings_scale_down_to_the_host():
    roomy = planned({}, profile="medium", sizing={"cores": 4, "memory_mb": 16384})
    tight = planned({}, profile="medium", sizing={"cores": 4, "memory_mb": 2048})
    assert worker(roomy, "synchrotron1")["systemd"]["MemoryHigh"] == "768M"
    high = int(worker(tight, "synchrotron1")["systemd"]["MemoryHigh"][:-1])
    top = int(worker(tight, "synchrotron1")["systemd"]["MemoryMax"][:-1])
    assert profiles.PROCESS_FLOOR_MB <= high < 768 and high < top <= 1024
    # every process on the main host together fits in the memory after the reserve
    total = sum(int(w["systemd"]["MemoryHigh"][:-1]) for w in tight["workers"]) + \
        int(tight["main"]["systemd"]["MemoryHigh"][:-1])
    assert total <= 2048 - profiles.HOST_RESERVE_MB
    assert tight["shared_config"]["caches"]["global_factor"] < 1.0
    assert any(r.startswith("memory:") for r in tight["layout"]["reasons"])


def test_tuning_off_leaves_synapse_defaults():
    result = planned({"pusher": 1}, tuning=False)
    assert "caches" not in result["shared_config"]
    assert worker(result, "pusher1")["systemd"] == {} and result["main"]["systemd"] == {}
    assert "database" not in worker(result, "pusher1")["config"]


def test_summary_names_the_layout_and_every_process():
    result = planned({}, profile="auto", sizing=TWO_CORES)
    summary = result["layout"]["summary"]
    assert summary[0] == "Layout: main + 1 worker(s) (synchrotron x1), profile small (chosen by auto)"
    assert any(line.strip().startswith("main ") and "pool 5..10" in line for line in summary)
    assert any(line.strip().startswith("synchrotron1 ") and "MemoryMax=1024M" in line for line in summary)


def test_auto_on_a_host_too_small_for_anything_plans_the_monolith_and_warns():
    result = planned({}, profile="auto", sizing={"cores": 1, "memory_mb": 512})
    assert result["layout"]["profile"] == "monolith" and counts(result) == {}
    assert any("below what even monolith needs" in w for w in result["layout"]["warnings"])
