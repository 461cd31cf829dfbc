"""Periodic jobs: cron in TIME_ZONE with DST rules, epoch-aligned intervals, exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobqueue.exceptions import ConfigurationError
from jobqueue.periodic import (
    PeriodicEntry,
    PeriodicRunner,
    PeriodicScheduler,
    latest_due,
    next_fire,
    parse_schedule,
)

NY = ZoneInfo("America/New_York")


def ny(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=NY, fold=fold)


def daily(cron: str) -> PeriodicEntry:
    return PeriodicEntry(name="x", task="tests.testapp.tasks.record", cron=cron)


def test_cron_is_read_in_local_time():
    tick = next_fire(daily("0 3 * * *"), ny(2026, 6, 1, 12, 0), NY)
    assert tick == ny(2026, 6, 2, 3, 0).astimezone(UTC)


def test_spring_forward_nonexistent_time_runs_once_shifted_by_the_offset():
    # 2026-03-08 02:30 does not exist in New York (02:00 -> 03:00).
    entry = daily("30 2 * * *")
    tick = next_fire(entry, ny(2026, 3, 7, 12, 0), NY)
    assert tick.astimezone(NY) == ny(2026, 3, 8, 3, 30)
    assert next_fire(entry, tick, NY).astimezone(NY) == ny(2026, 3, 9, 2, 30)


def test_fall_back_ambiguous_time_runs_once_at_first_occurrence():
    # 2026-11-01 01:30 happens twice in New York.
    entry = daily("30 1 * * *")
    first = next_fire(entry, ny(2026, 10, 31, 12, 0), NY)
    assert first == ny(2026, 11, 1, 1, 30, fold=0).astimezone(UTC)
    second = next_fire(entry, first, NY)
    assert second.astimezone(NY).date() == datetime(2026, 11, 2).date()
    # Even asked from inside the repeated hour, the repeat is not a new tick.
    inside = ny(2026, 11, 1, 1, 45, fold=1)
    assert next_fire(entry, inside, NY).astimezone(NY).date() == datetime(2026, 11, 2).date()


def test_hourly_cron_across_both_dst_changes_never_doubles_or_skips_wall_hours():
    entry = daily("0 * * * *")
    start = ny(2026, 10, 31, 23, 0)
    ticks, t = [], start
    for _ in range(6):
        t = next_fire(entry, t, NY)
        ticks.append(t.astimezone(NY).strftime("%H:%M"))
    assert ticks == ["00:00", "01:00", "02:00", "03:00", "04:00", "05:00"]


def test_every_is_aligned_to_the_epoch():
    entry = PeriodicEntry(name="e", task="t", every=300)
    tick = next_fire(entry, datetime(2026, 1, 1, 0, 7, 12, tzinfo=UTC), NY)
    assert tick == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)


def test_missed_ticks_are_coalesced_into_the_latest():
    entry = PeriodicEntry(name="e", task="t", every=60)
    last = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    now = last + timedelta(minutes=10, seconds=30)
    assert latest_due(entry, last, now, UTC) == last + timedelta(minutes=10)


def test_scheduler_plans_new_entries_from_now_and_old_ones_from_their_last_run():
    entry = PeriodicEntry(name="e", task="t", every=60)
    sched = PeriodicScheduler([entry], zone=UTC)
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    sched.start(now, {})
    assert sched.due(now) == []
    assert [t for _, t in sched.due(now + timedelta(seconds=31))] == [
        datetime(2026, 1, 1, 12, 1, tzinfo=UTC)]
    sched2 = PeriodicScheduler([entry], zone=UTC)
    sched2.start(now, {"e": now - timedelta(hours=5)})
    assert [t for _, t in sched2.due(now)] == [datetime(2026, 1, 1, 12, 0, tzinfo=UTC)]


@pytest.mark.parametrize("raw, message", [
    ({"x": {"task": "a.b", "cron": "61 * * * *"}}, "not a valid cron"),
    ({"x": {"task": "a.b"}}, "exactly one of"),
    ({"x": {"task": "a.b", "cron": "* * * * *", "every": 5}}, "exactly one of"),
    ({"x": {"task": "a.b", "every": 0}}, "at least 1 second"),
    ({"x": {"cron": "* * * * *"}}, "dotted path"),
    ({"x": {"task": "a.b", "every": 5, "when": 1}}, "unknown keys"),
])
def test_invalid_entries_name_the_entry(raw, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        parse_schedule(raw)
    assert "SCHEDULE']['x']" in str(info.value)


def test_each_tick_is_enqueued_exactly_once_across_many_workers(jq):
    entries = parse_schedule({"tick": {"task": "tests.testapp.tasks.record", "every": 60,
                                       "args": ["periodic"], "queue": "low"}})
    runners = [PeriodicRunner(jq.broker, entries) for _ in range(5)]
    base = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    for r in runners:
        r.tick(base)
    fired = []
    for minute in range(1, 4):
        now = base + timedelta(minutes=minute)
        for r in runners:
            fired += r.tick(now)
    assert fired == ["tick", "tick", "tick"]
    assert jq.redis.llen(jq.key("queue", "low")) == 3
    last = jq.redis.hget(jq.key("jobqueue", "periodic", "last"), "tick")
    assert int(last) == int((base + timedelta(minutes=3, seconds=-30)).timestamp())
    assert jq.redis.hget(jq.key("delayed", "last_enqueued_at"), "tick")


def test_fired_periodic_jobs_are_run_by_a_real_worker(jq, settings):
    settings.JOBQUEUE = {**settings.JOBQUEUE, "SCHEDULE": {
        "every-second": {"task": "tests.testapp.tasks.record", "every": 1, "args": ["p"]}}}
    runner = PeriodicRunner(jq.broker, parse_schedule(settings.JOBQUEUE["SCHEDULE"]))
    now = datetime.now(UTC)
    runner.tick(now)
    runner.tick(now + timedelta(seconds=1.5))
    jq.run_worker("--burst", "--no-fork")
    assert [m.split(":")[0] for m in jq.redis.lrange(jq.key("test:record"), 0, -1)] == ["p"]


def test_system_checks_report_unknown_schedule_tasks_and_queues(settings):
    from jobqueue.checks import check_settings

    settings.JOBQUEUE = {"SCHEDULE": {
        "ghost": {"task": "nowhere.tasks.nothing", "every": 60},
        "wrong-queue": {"task": "tests.testapp.tasks.add", "every": 60, "queue": "nope"},
    }}
    settings.TASKS = {"default": {"BACKEND": "jobqueue.backends.redis.RedisBackend",
                                  "QUEUES": ["default", "mail"], "OPTIONS": {}}}
    ids = sorted(m.id for m in check_settings())
    assert ids == ["jobqueue.E005", "jobqueue.E006"]


def test_unparsable_cron_is_a_system_check_error(settings):
    from jobqueue.checks import check_settings

    settings.JOBQUEUE = {"SCHEDULE": {"bad": {"task": "tests.testapp.tasks.add", "cron": "nope"}}}
    [message] = check_settings()
    assert message.id == "jobqueue.E002" and "not a valid cron" in message.msg
