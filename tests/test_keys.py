"""``jobqueue.keys``: every key name, pinned against Resque's and resque-scheduler's inventory.

Ruby Resque stores every key as ``resque:<key>`` (redis-namespace), node-resque builds
``namespace:part:part``; jobqueue must produce exactly the same strings to share their data.
"""

from __future__ import annotations

import dataclasses

import pytest

from jobqueue.keys import Keys

WID = "web1:4242:critical,*"
ITEM = '{"class":"Mail","args":[{"user_id":5}],"queue":"mail"}'


def test_default_namespace_is_resque():
    assert Keys().namespace == "resque"
    assert Keys().queues == "resque:queues"


# --------------------------------------------------------------------------- Resque's keys
@pytest.mark.parametrize("key, expected", [
    (Keys().queues, "resque:queues"),
    (Keys().queue("file_serve"), "resque:queue:file_serve"),
    (Keys().workers, "resque:workers"),
    (Keys().worker(WID), "resque:worker:web1:4242:critical,*"),
    (Keys().worker_started(WID), "resque:worker:web1:4242:critical,*:started"),
    (Keys().heartbeats, "resque:workers:heartbeat"),
    (Keys().prune_lock, "resque:pruning_dead_workers_in_progress"),
    (Keys().stat("processed"), "resque:stat:processed"),
    (Keys().stat("failed"), "resque:stat:failed"),
    (Keys().stat("processed", WID), "resque:stat:processed:web1:4242:critical,*"),
    (Keys().stat("failed", WID), "resque:stat:failed:web1:4242:critical,*"),
    (Keys().failed, "resque:failed"),
    (Keys().pause_all, "resque:pause-all-workers"),
])
def test_resque_key_inventory(key: str, expected: str):
    assert key == expected


# --------------------------------------------------------------------------- resque-scheduler
@pytest.mark.parametrize("key, expected", [
    (Keys().delayed_schedule, "resque:delayed_queue_schedule"),
    (Keys().delayed(1795551802), "resque:delayed:1795551802"),
    (Keys().timestamps(ITEM), f"resque:timestamps:{ITEM}"),
    (Keys().last_enqueued_at, "resque:delayed:last_enqueued_at"),
])
def test_resque_scheduler_key_inventory(key: str, expected: str):
    assert key == expected


def test_timestamps_key_embeds_the_item_bytes_unchanged():
    item = '{"class":"A","args":["ü/x",": :"]}'
    assert Keys().timestamps(item) == "resque:timestamps:" + item


# --------------------------------------------------------------------------- jobqueue's own
@pytest.mark.parametrize("key, expected", [
    (Keys().result("689f6cb1"), "resque:jobqueue:result:689f6cb1"),
    (Keys().wake("mail"), "resque:jobqueue:wake:mail"),
    (Keys().worker_info(WID), "resque:jobqueue:worker:web1:4242:critical,*"),
    (Keys().priority_queue("mail"), "resque:jobqueue:priority:mail"),
    (Keys().priority_sequence, "resque:jobqueue:priority-seq"),
    (Keys().periodic_last, "resque:jobqueue:periodic:last"),
    (Keys().reaper_lock, "resque:jobqueue:reaper"),
    (Keys().history("processed", 29923347), "resque:jobqueue:history:processed:29923347"),
    (Keys().history("failed", 29923347), "resque:jobqueue:history:failed:29923347"),
])
def test_jobqueue_keys_live_under_the_jobqueue_prefix(key: str, expected: str):
    assert key == expected


def _all_keys(keys: Keys) -> list[str]:
    return [
        keys.queues, keys.queue("q"), keys.workers, keys.worker(WID), keys.worker_started(WID),
        keys.heartbeats, keys.prune_lock, keys.stat("processed"), keys.stat("failed", WID),
        keys.failed, keys.pause_all, keys.delayed_schedule, keys.delayed(1), keys.timestamps(ITEM),
        keys.last_enqueued_at, keys.result("r"), keys.wake("q"), keys.worker_info(WID),
        keys.priority_queue("q"), keys.priority_sequence, keys.periodic_last, keys.reaper_lock,
        keys.history("processed", 1),
    ]


def test_every_key_is_distinct():
    keys = _all_keys(Keys())
    assert len(set(keys)) == len(keys)


def test_jobqueue_keys_never_collide_with_resque_queue_or_worker_keys():
    # A queue or worker literally named "jobqueue" must not alias jobqueue's own keys.
    k = Keys()
    assert k.queue("result") != k.result("x")
    assert not k.wake("mail").startswith("resque:queue:")
    assert not k.worker_info(WID).startswith("resque:worker:")


# --------------------------------------------------------------------------- namespaces
def test_custom_namespace_prefixes_every_key():
    for key in _all_keys(Keys("shop")):
        assert key.startswith("shop:")
    assert Keys("shop").queue("mail") == "shop:queue:mail"
    assert Keys("shop").delayed_schedule == "shop:delayed_queue_schedule"
    assert Keys("shop").result("r1") == "shop:jobqueue:result:r1"


def test_namespace_with_colons_is_used_verbatim():
    assert Keys("shop:jobs").worker_started(WID) == "shop:jobs:worker:web1:4242:critical,*:started"
    assert Keys("shop:jobs").heartbeats == "shop:jobs:workers:heartbeat"


def test_same_names_in_two_namespaces_never_share_a_key():
    a, b = _all_keys(Keys("a")), _all_keys(Keys("b"))
    assert not set(a) & set(b)


def test_queue_names_with_colons_are_kept_whole():
    assert Keys().queue("mail:high") == "resque:queue:mail:high"


def test_keys_is_an_immutable_value():
    keys = Keys("shop")
    assert keys == Keys("shop") and hash(keys) == hash(Keys("shop"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        keys.namespace = "other"  # type: ignore[misc]
