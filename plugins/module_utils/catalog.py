# -*- coding: utf-8 -*-
# Copyright: matrixops.synapse contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The single source of truth for Synapse's worker model.

Everything the planner knows about Synapse lives in the tables of this file:
the pinned Synapse version, the replication streams and their cardinality,
the endpoint groups a reverse proxy routes, and one row per worker type.
Adding a worker type is adding a row to ``WORKER_TYPES``; the planner has no
per-type branches.

Facts were checked against the pinned Synapse itself (``synapse/config/workers.py``,
``python -m synapse._scripts.generate_workers_map``) and its docs/workers.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

# The Synapse release this collection installs and validates against. This is the one place
# the version is pinned; roles take it from the planner's result.
SYNAPSE_VERSION = "1.163.2"

# Synapse installs from PyPI with its dependencies' newest releases, and an older Synapse does not
# know of a later break. Each row caps a dependency for the releases before ``fixed_in`` (the first
# release that caps it itself), so that the previous releases stay installable for upgrades and
# rollbacks: (fixed_in, requirement, why).
PIP_CONSTRAINTS = (
    ("1.163.0", "txredisapi<1.6.0",
     "txredisapi 1.6.0 dropped what Synapse's Redis connection factory calls (startedConnecting): "
     "main stops at start-up with AttributeError; Synapse 1.163.0 caps it below 1.6.0"),
)

MAIN = "main"            # name of the main process in instance_map and in our output
MAIN_WRITER = "master"   # name of the main process in stream_writers and duty lists (Synapse's own)

GENERIC_APP = "synapse.app.generic_worker"

# Keys Synapse removed: a config carrying them stops Synapse (or is silently ignored).
REMOVED_KEYS = {
    "worker_replication_host": "removed in Synapse 1.88: main's replication address is instance_map.main, "
                               "which the planner writes; delete the key",
    "worker_replication_http_port": "removed in Synapse 1.88: main's replication port is instance_map.main, "
                                    "which the planner writes; delete the key",
    "worker_replication_http_tls": "removed in Synapse 1.88: set tls in instance_map.main instead; delete the key",
    "worker_replication_port": "direct TCP replication was removed in Synapse 1.67 (Redis replaces it); "
                               "delete the key",
    "worker_main_http_uri": "unused since Synapse 1.73; delete the key",
}

# Legacy on/off flags replaced by the *_instances lists and duty keys the planner writes.
LEGACY_DUTY_FLAGS = {
    "send_federation": "federation_sender",
    "start_pushers": "pusher",
    "notify_appservices": "appservice",
    "update_user_directory": "user_dir",
}

# Keys the planner computes; an operator setting them by hand would contradict the plan.
PLANNER_OWNED_KEYS = frozenset([
    "listeners", "instance_map", "stream_writers", "federation_sender_instances",
    "pusher_instances", "run_background_tasks_on", "update_user_directory_from_worker",
    "notify_appservices_from_worker", "media_instance_running_background_jobs",
    "enable_media_repo", "redis", "worker_app", "worker_name", "worker_listeners",
    "worker_log_config", "worker_daemonize", "outbound_federation_restricted_to",
])

# Replication streams. ``max_writers`` None means "any number" (sharded); 1 means exactly one.
# ``since`` is the first Synapse version that accepts a writer other than main for the stream
# (for multi-writer streams: the version that allows more than one).
Stream = namedtuple("Stream", "name max_writers since multi_since experimental")

STREAMS = dict((s.name, s) for s in [
    Stream("events", None, "1.21", "1.21", False),
    Stream("typing", 1, "1.18", None, False),
    Stream("to_device", 1, "1.26", None, False),
    Stream("account_data", 1, "1.26", None, False),
    Stream("receipts", None, "1.26", "1.96", False),
    Stream("presence", 1, "1.33", None, False),
    Stream("push_rules", 1, "1.105", None, False),
    Stream("device_lists", None, "1.135", "1.135", False),
    Stream("thread_subscriptions", None, "1.135", "1.135", True),
    Stream("quarantined_media_changes", None, "1.152", "1.152", False),
])

# Shared-config duty keys. ``kind`` is "list" (N instances, sharded) or "single" (one instance).
Duty = namedtuple("Duty", "key kind")

# Endpoint groups: what a reverse proxy routes as one unit.
#   entrypoints:   "client" and/or "federation" listener of the proxy
#   methods:       () for all methods, else the HTTP methods the group covers
#   sticky:        None (balanced), "user" (access token), "room" (room ID in the path),
#                  "origin" (requesting server / source address)
#   main_fallback: whether main can serve the group when every worker of it is down
#   prefer:        worker types that can serve the group, best first: the group is routed to
#                  the instances of the best-ranked type the plan has (writers before generic
#                  pools), and stays on main when the plan has none of them
#   patterns:      anchored regular expressions, as in Synapse's docs/workers.md
#   without_query: the group only takes requests that lack this query parameter (initial
#                  syncs are /sync requests without "since")
EndpointGroup = namedtuple("EndpointGroup", "name entrypoints methods sticky main_fallback prefer patterns "
                                            "without_query", defaults=(None,))

_V = r"(api/v1|r0|v3|unstable)"
_V3 = r"(r0|v3|unstable)"

ENDPOINT_GROUPS = dict((g.name, g) for g in [
    EndpointGroup("media", ("client", "federation"), (), None, False, ("media_repository",), (
        r"^/_matrix/media/",
        r"^/_matrix/client/v1/media/",
        r"^/_matrix/federation/v1/media/",
        r"^/_synapse/admin/v1/purge_media_cache$",
        r"^/_synapse/admin/v1/room/.*/media.*$",
        r"^/_synapse/admin/v1/user/.*/media.*$",
        r"^/_synapse/admin/v1/media/.*$",
        r"^/_synapse/admin/v1/quarantine_media/.*$",
        r"^/_synapse/admin/v1/users/.*/media$",
    )),
    # SSO: every step of one login must reach the same process, so the type allows one instance.
    EndpointGroup("sso", ("client",), (), None, True, ("sso_login",), (
        r"^/_matrix/client/" + _V + r"/login/sso/redirect",
        r"^/_synapse/client/pick_idp$",
        r"^/_synapse/client/pick_username",
        r"^/_synapse/client/new_user_consent$",
        r"^/_synapse/client/sso_register$",
        r"^/_synapse/client/oidc/callback$",
        r"^/_synapse/client/saml2/authn_response$",
        r"^/_matrix/client/" + _V + r"/login/cas/ticket$",
    )),
    # Stream-writer groups: only the writer may answer, so no fallback to main.
    EndpointGroup("typing", ("client",), (), None, False, ("typing_persister",), (
        r"^/_matrix/client/" + _V + r"/rooms/.*/typing",
    )),
    EndpointGroup("to_device", ("client",), (), None, False, ("to_device",), (
        r"^/_matrix/client/" + _V3 + r"/sendToDevice/",
    )),
    EndpointGroup("account_data", ("client",), (), None, False, ("account_data", "receipts_account"), (
        r"^/_matrix/client/" + _V3 + r"/.*/tags",
        r"^/_matrix/client/" + _V3 + r"/.*/account_data",
    )),
    EndpointGroup("receipts", ("client",), (), None, True, ("receipts", "receipts_account"), (
        r"^/_matrix/client/" + _V3 + r"/rooms/.*/receipt",
        r"^/_matrix/client/" + _V3 + r"/rooms/.*/read_markers",
    )),
    # Presence: only the presence writer may answer for other users (C05); never a generic pool.
    EndpointGroup("presence", ("client",), (), None, False, ("presence_writer",), (
        r"^/_matrix/client/" + _V + r"/presence/",
    )),
    EndpointGroup("push_rules", ("client",), (), None, False, ("push_rules",), (
        r"^/_matrix/client/" + _V + r"/pushrules/",
    )),
    EndpointGroup("device_lists", ("client",), (), None, True, ("device_lists", "encryption", "client_reader"), (
        r"^/_matrix/client/(r0|v3)/delete_devices$",
        r"^/_matrix/client/" + _V + r"/devices(/|$)",
        r"^/_matrix/client/" + _V3 + r"/keys/upload",
        r"^/_matrix/client/" + _V + r"/keys/device_signing/upload$",
        r"^/_matrix/client/" + _V + r"/keys/signatures/upload$",
    )),
    EndpointGroup("sync", ("client",), (), "user", True, ("synchrotron", "initial_synchrotron"), (
        r"^/_matrix/client/(r0|v3)/sync$",
        r"^/_matrix/client/(api/v1|r0|v3)/events$",
        r"^/_matrix/client/unstable/org\.matrix\.simplified_msc3575/sync$",
    )),
    # Initial syncs (a /sync without "since", and the legacy initialSync) in a pool of their own,
    # so that they do not slow down the incremental syncs of everyone else.
    EndpointGroup("initial_sync", ("client",), (), "user", True, ("initial_synchrotron", "synchrotron"), (
        r"^/_matrix/client/(r0|v3)/sync$",
        r"^/_matrix/client/(api/v1|r0|v3)/initialSync$",
        r"^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$",
    ), "since"),
    EndpointGroup("room_messages", ("client",), (), "room", True, ("client_reader",), (
        r"^/_matrix/client/" + _V + r"/rooms/[^/]+/messages$",
    )),
    EndpointGroup("event_send", ("client",), (), "room", True, ("event_creator",), (
        r"^/_matrix/client/" + _V + r"/rooms/.*/redact",
        r"^/_matrix/client/" + _V + r"/rooms/.*/send",
        r"^/_matrix/client/" + _V + r"/rooms/.*/state/",
        r"^/_matrix/client/" + _V + r"/rooms/.*/(join|invite|leave|ban|unban|kick)$",
        r"^/_matrix/client/" + _V + r"/join/",
        r"^/_matrix/client/" + _V + r"/knock/",
        r"^/_matrix/client/" + _V + r"/profile/",
    )),
    EndpointGroup("encryption", ("client",), (), None, True, ("encryption", "client_reader"), (
        r"^/_matrix/client/" + _V3 + r"/keys/query$",
        r"^/_matrix/client/" + _V3 + r"/keys/changes$",
        r"^/_matrix/client/" + _V3 + r"/keys/claim$",
        r"^/_matrix/client/" + _V3 + r"/room_keys/",
    )),
    EndpointGroup("login", ("client",), (), None, True, ("client_reader",), (
        r"^/_matrix/client/" + _V + r"/login$",
        r"^/_matrix/client/" + _V3 + r"/register$",
        r"^/_matrix/client/" + _V3 + r"/register/available$",
        r"^/_matrix/client/v1/register/m\.login\.registration_token/validity$",
        r"^/_matrix/client/" + _V3 + r"/password_policy$",
    )),
    EndpointGroup("user_directory", ("client",), (), None, True, ("user_dir", "client_reader"), (
        r"^/_matrix/client/" + _V3 + r"/user_directory/search$",
    )),
    EndpointGroup("client_read_get", ("client",), ("GET", "HEAD"), None, True, ("client_reader",), (
        r"^/_matrix/client/" + _V + r"/pushrules/",
        r"^/_synapse/admin/v2/users/[^/]+$",
    )),
    EndpointGroup("client_read", ("client",), (), None, True, ("client_reader",), (
        r"^/_matrix/client/" + _V + r"/createRoom$",
        r"^/_matrix/client/" + _V + r"/publicRooms$",
        r"^/_matrix/client/" + _V + r"/rooms/.*/joined_members$",
        r"^/_matrix/client/" + _V + r"/rooms/.*/context/.*$",
        r"^/_matrix/client/" + _V + r"/rooms/.*/members$",
        r"^/_matrix/client/" + _V + r"/rooms/.*/state$",
        r"^/_matrix/client/v1/rooms/.*/hierarchy$",
        r"^/_matrix/client/(v1|unstable)/rooms/.*/relations/",
        r"^/_matrix/client/v1/rooms/.*/threads$",
        r"^/_matrix/client/unstable/im\.nheko\.summary/summary/.*$",
        r"^/_matrix/client/v1/room_summary/.*$",
        r"^/_matrix/client/" + _V3 + r"/account/3pid$",
        r"^/_matrix/client/" + _V3 + r"/account/whoami$",
        r"^/_matrix/client/" + _V3 + r"/account/deactivate$",
        r"^/_matrix/client/versions$",
        r"^/_matrix/client/" + _V + r"/voip/turnServer$",
        r"^/_matrix/client/" + _V + r"/rooms/.*/event/",
        r"^/_matrix/client/" + _V + r"/joined_rooms$",
        r"^/_matrix/client/v1/rooms/.*/timestamp_to_event$",
        r"^/_matrix/client/(api/v1|r0|v3|unstable/.*)/rooms/.*/aliases",
        r"^/_matrix/client/" + _V + r"/search$",
        r"^/_matrix/client/" + _V3 + r"/user/.*/filter(/|$)",
        r"^/_matrix/client/" + _V + r"/directory/room/.*$",
        r"^/_matrix/client/" + _V3 + r"/capabilities$",
        r"^/_matrix/client/" + _V3 + r"/notifications$",
        r"^/_synapse/admin/v1/rooms/[^/]+$",
    )),
    EndpointGroup("federation_inbound", ("federation",), (), "origin", True,
                  ("federation_inbound", "federation_reader"), (
                      r"^/_matrix/federation/v1/send/",
                  )),
    EndpointGroup("federation_read", ("federation",), (), None, True, ("federation_reader",), (
        r"^/_matrix/federation/v1/version$",
        r"^/_matrix/federation/v1/event/",
        r"^/_matrix/federation/v1/state/",
        r"^/_matrix/federation/v1/state_ids/",
        r"^/_matrix/federation/v1/backfill/",
        r"^/_matrix/federation/v1/get_missing_events/",
        r"^/_matrix/federation/v1/publicRooms",
        r"^/_matrix/federation/v1/query/",
        r"^/_matrix/federation/v1/make_join/",
        r"^/_matrix/federation/v1/make_leave/",
        r"^/_matrix/federation/(v1|v2)/send_join/",
        r"^/_matrix/federation/(v1|v2)/send_leave/",
        r"^/_matrix/federation/v1/make_knock/",
        r"^/_matrix/federation/v1/send_knock/",
        r"^/_matrix/federation/(v1|v2)/invite/",
        r"^/_matrix/federation/v1/event_auth/",
        r"^/_matrix/federation/v1/timestamp_to_event/",
        r"^/_matrix/federation/v1/exchange_third_party_invite/",
        r"^/_matrix/federation/v1/user/devices/",
        r"^/_matrix/federation/v1/user/keys/(query|claim)$",
        r"^/_matrix/federation/v1/openid/userinfo$",
        r"^/_matrix/federation/unstable/rooms/[^/]+/complexity$",
        r"^/_matrix/key/v2/query",
        r"^/_matrix/federation/v1/hierarchy/",
    )),
])

# Endpoints a generic worker registers (per `python -m synapse._scripts.generate_workers_map`
# of the pinned Synapse) that the routing table deliberately leaves on main, with the reason.
# tests/unit/test_workers_map.py fails on any worker-capable endpoint neither routed nor listed.
KEPT_ON_MAIN = {
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/createRoom/.*$":
        "a registration form with a trailing segment no client uses; /createRoom itself is routed",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/events/.*$":
        "legacy GET /events/{eventId} (r0 era), rarely called; not worth a route",
    r"^/_matrix/client/unstable/im.nheko.summary/rooms/.*/summary$":
        "unstable room-summary variant (MSC3266); the stable /v1/room_summary is routed",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/.*$":
        "catch-all form of the room endpoints; the real ones (send, state, membership, redact, "
        "typing, receipts, messages, members, ...) are routed by their own patterns",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/.*/.*$":
        "catch-all form of the room endpoints, as above",
    r"^/_matrix/client/unstable/org\.matrix\.msc4140/delayed_events$":
        "delayed events (MSC4140) are unstable and off by default",
    r"^/_matrix/client/unstable/org\.matrix\.msc4140/delayed_events/.*/restart$":
        "delayed events (MSC4140) are unstable and off by default",
    r"^/_matrix/client/unstable/org\.matrix\.msc4140/delayed_events/.*$":
        "delayed events (MSC4140) are unstable and off by default",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/.*$":
        "the catch-all form printed for the push-rule servlet; GET /pushrules/ is routed",
    r"^/_matrix/client/(v1|unstable)/appservice/.*/ping$":
        "application-service ping, rare and administrative",
    r"^/_matrix/federation/v1/3pid/onbind$":
        "third-party invite binding from identity servers, rare",
}

# The order in which the proxy tries the groups: the first group whose pattern (and method)
# matches wins. More specific groups come first: media before anything under /_synapse/admin,
# stream writers' paths before the generic pools that also match them (account data before
# the GET-only reads, typing and receipts before room reads), messages before room reads.
ROUTING_ORDER = (
    "media", "sso", "typing", "to_device", "account_data", "receipts", "presence", "push_rules",
    "device_lists", "initial_sync", "sync", "room_messages", "event_send", "encryption", "login",
    "user_directory", "client_read_get", "client_read", "federation_inbound", "federation_read",
)

# Restart scopes (what a change to the set of instances of a type forces, per Synapse's docs),
# weakest first:
#   "self": only the instances that changed
#   "main_and_type": main and every instance of the type (pushers, single-instance duties)
#   "stop_all_start": stop every instance of the type together, then start them
#                     (federation senders: sharded by destination)
#   "all": every Synapse process (event persisters: events are sharded by room over the list)
RESTART_SCOPES = ("self", "main_and_type", "stop_all_start", "all")

# One row per worker type.
#   streams:       replication streams its instances write (stream_writers)
#   duties:        shared-config duty keys it fills
#   resources:     resources of its HTTP listener; () means it serves no HTTP and gets a
#                  listener with only the "health" resource
#   max_count:     None for any number; otherwise the most instances allowed (stream rules
#                  are checked separately, per stream)
#   worker_config: keys added to each instance's own config file
#   restart:       restart scope (RESTART_SCOPES) when its set of instances changes
#   since:         first Synapse version supporting the type as configured here
#   experimental:  refused unless the wish sets allow_experimental
#   Which endpoint groups are routed to a type is the ``prefer`` column of ENDPOINT_GROUPS.
WorkerType = namedtuple(
    "WorkerType",
    "name description streams duties resources max_count worker_config restart since experimental")


def _t(name, description, streams=(), duties=(), resources=(), max_count=None, worker_config=None,
       restart="self", since="1.0", experimental=False):
    return WorkerType(name, description, tuple(streams), tuple(duties), tuple(resources), max_count,
                      worker_config or {}, restart, since, experimental)


_LIST = "list"            # *_instances: every instance, sharded
_SINGLE = "single"        # exactly one instance may hold the duty
_FIRST = "single_of_many"  # one of several instances holds it (media background jobs)

WORKER_TYPES = dict((t.name, t) for t in [
    _t("appservice", "Sends events to application services (bridges, bots).",
       duties=[Duty("notify_appservices_from_worker", _SINGLE)], max_count=1,
       restart="main_and_type", since="1.59"),
    _t("background", "Runs Synapse's periodic background tasks.",
       duties=[Duty("run_background_tasks_on", _SINGLE)], max_count=1, restart="main_and_type",
       since="1.22"),
    _t("client_reader", "Serves read-mostly client API requests: room state and members, history "
       "(sticky per room), login and registration, keys, search.", resources=["client"]),
    _t("encryption", "Serves end-to-end encryption requests (key queries and claims, backups; "
       "device key uploads when no device_lists writer exists).", resources=["client"]),
    _t("event_creator", "Creates events sent by clients (send, state, membership), sticky per "
       "room, and hands them to the event persisters.", resources=["client"]),
    _t("event_persister", "Writes the events stream, sharded by room.", streams=["events"],
       resources=["health"], restart="all", since="1.21"),
    _t("federation_inbound", "Receives inbound federation transactions, sticky per origin.",
       resources=["federation"]),
    _t("federation_reader", "Serves federation requests from other homeservers.",
       resources=["federation"]),
    _t("federation_sender", "Sends outbound federation traffic, sharded by destination.",
       duties=[Duty("federation_sender_instances", _LIST)], restart="stop_all_start"),
    _t("initial_synchrotron", "Serves initial syncs in a pool of their own.", resources=["client"]),
    _t("media_repository", "Serves and stores media (uploads, downloads, thumbnails, previews) "
       "on the client and federation entrypoints.",
       streams=["quarantined_media_changes"],
       duties=[Duty("media_instance_running_background_jobs", _FIRST)],
       resources=["media"], worker_config={"enable_media_repo": True}),
    _t("presence_writer", "Writes the presence stream and answers presence requests.",
       streams=["presence"], resources=["client"]),
    _t("pusher", "Sends push notifications to push gateways and email.",
       duties=[Duty("pusher_instances", _LIST)], restart="main_and_type"),
    _t("receipts_account", "Writes the receipts and account data streams in one process "
       "(the combined form; account data allows one writer, so this type allows one instance).",
       streams=["receipts", "account_data"], resources=["client"]),
    _t("sso_login", "Serves single sign-on login flows (every step of a login on one process).",
       resources=["client"], max_count=1),
    _t("synchrotron", "Serves /sync and /events long-polls, sticky per user.", resources=["client"]),
    _t("typing_persister", "Writes the typing stream and answers typing requests.",
       streams=["typing"], resources=["client"]),
    _t("user_dir", "Updates the user directory and serves its searches.",
       duties=[Duty("update_user_directory_from_worker", _SINGLE)], resources=["client"],
       max_count=1, restart="main_and_type", since="1.59"),
    _t("account_data", "Writes the account data stream (tags, account data).",
       streams=["account_data"], resources=["client"]),
    _t("receipts", "Writes the receipts stream (read receipts, read markers); several allowed.",
       streams=["receipts"], resources=["client"]),
    _t("device_lists", "Writes the device lists stream (device and cross-signing key changes); "
       "several allowed.", streams=["device_lists"], resources=["client"]),
    _t("push_rules", "Writes the push rules stream and answers push rule requests.",
       streams=["push_rules"], resources=["client"]),
    _t("to_device", "Writes the to-device stream (sendToDevice).", streams=["to_device"],
       resources=["client"]),
    _t("thread_subscriptions", "Writes the experimental thread subscriptions stream (MSC4306).",
       streams=["thread_subscriptions"], resources=["health"], experimental=True),
])


def routed_groups(type_name):
    """Endpoint groups that may be routed to a worker type (derived from ``prefer``)."""
    return tuple(g for g in ROUTING_ORDER if type_name in ENDPOINT_GROUPS[g].prefer)


def version_tuple(version):
    """'1.163.2' -> (1, 163, 2); raises ValueError on anything else."""
    parts = str(version).strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError("not a Synapse version: %r" % (version,))
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))


def pip_requirements(version):
    """What pip installs into Synapse's venv for ``version`` (a string like "1.163.2"): Synapse
    with the extras workers need, and the caps of ``PIP_CONSTRAINTS`` that apply to it."""
    wanted = version_tuple(version)
    return (["matrix-synapse[postgres,redis]==%s" % version]
            + [req for fixed_in, req, _why in PIP_CONSTRAINTS if wanted < version_tuple(fixed_in)])
