"""The per-type roles (roles/<type>/) must never drift from the catalogue.

They are written by scripts/gen-type-roles.py from WORKER_TYPES; after changing the catalogue,
run ``python3 scripts/gen-type-roles.py`` and commit what it writes.
"""

import importlib.util
import os

import pytest
import yaml

from ansible_collections.matrixops.synapse.plugins.module_utils.catalog import WORKER_TYPES

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = "run `python3 scripts/gen-type-roles.py` and commit the result"


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "gen_type_roles", os.path.join(ROOT, "scripts", "gen-type-roles.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()
TYPES = sorted(WORKER_TYPES)


def _read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as handle:
        return handle.read()


@pytest.mark.parametrize("name", TYPES)
def test_every_catalogue_type_has_its_role(name):
    missing = [rel for rel in GEN.FILES if not os.path.isfile(os.path.join(ROOT, "roles", name, rel))]
    assert not missing, "roles/%s lacks %s; %s" % (name, ", ".join(missing), FIX)


@pytest.mark.parametrize("name", TYPES)
def test_role_is_what_the_generator_writes(name):
    for rel, content in GEN.render(WORKER_TYPES[name]).items():
        path = os.path.join("roles", name, rel)
        assert os.path.isfile(os.path.join(ROOT, path)), "%s is missing; %s" % (path, FIX)
        assert _read(path) == content, "%s differs from the catalogue; %s" % (path, FIX)


def test_no_generated_role_outlives_its_type():
    assert GEN.stale_roles(ROOT) == [], "delete these roles: their type left the catalogue"


def test_render_all_covers_exactly_the_catalogue():
    roles = sorted(set(rel.split(os.sep)[1] for rel in GEN.render_all()))
    assert roles == TYPES


@pytest.mark.parametrize("name", TYPES)
def test_role_is_thin_and_selects_its_type(name):
    files = GEN.render(WORKER_TYPES[name])
    tasks = yaml.safe_load(files["tasks/main.yml"])
    assert len(tasks) == 1
    task = tasks[0]
    assert task["ansible.builtin.include_role"] == {"name": "matrixops.synapse.synapse_worker"}
    assert task["vars"] == {"synapse_worker_types": [name]}

    meta = yaml.safe_load(files["meta/main.yml"])
    assert meta["galaxy_info"]["role_name"] == name
    assert meta["galaxy_info"]["description"] == WORKER_TYPES[name].description
    assert meta["dependencies"] == []
    assert len(files["README.md"].splitlines()) == 3


@pytest.mark.parametrize("name", TYPES)
def test_argument_specs_mirror_synapse_worker(name):
    worker = yaml.safe_load(_read("roles/synapse_worker/meta/argument_specs.yml"))["argument_specs"]["main"]
    spec = yaml.safe_load(GEN.render(WORKER_TYPES[name])["meta/argument_specs.yml"])["argument_specs"]
    assert list(spec) == ["main"]
    main = spec["main"]
    assert main["description"][0] == WORKER_TYPES[name].description
    assert "places on this inventory host" in main["description"][1]
    assert sorted(main["options"]) == ["synapse_plan", "synapse_public_baseurl", "synapse_server_name"]
    for option, value in main["options"].items():
        assert value["type"] == worker["options"][option]["type"], option
        assert value["required"] is True and worker["options"][option]["required"] is True, option
    text = GEN.render(WORKER_TYPES[name])["meta/argument_specs.yml"]
    assert "{{" not in text and "{%" not in text  # ansible-core templates the spec
