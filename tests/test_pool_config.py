"""``JOBQUEUE["POOL"]`` and resque-pool.yml: parsing, environments, errors, system checks."""

from __future__ import annotations

import json
import sys

import pytest

from jobqueue.checks import check_pool
from jobqueue.exceptions import ConfigurationError
from jobqueue.pool_config import (
    PoolConfig,
    WorkerSpec,
    describe,
    environment_name,
    load,
    load_file,
    parse_pool,
    select_environment,
)

RESQUE_POOL_YML = """\
foo: 1
"foo,bar,baz": 1
"*": 1
production:
  "foo,bar,baz": 4
  "mail": 2
staging:
  foo: 7
"""


def test_counts_and_queue_lists_keep_their_order_and_resque_patterns():
    config = parse_pool({"critical": 2, "default, mail": 3, "*": 1, "!low,*": 0})
    assert [(s.key, s.queues, s.count) for s in config.specs] == [
        ("critical", ("critical",), 2),
        ("default,mail", ("default", "mail"), 3),
        ("*", ("*",), 1),
        ("!low,*", ("!low", "*"), 0),
    ]
    assert config.total == 6
    assert describe(config) == "critical=2 default,mail=3 *=1 !low,*=0"


def test_per_worker_options_form():
    config = parse_pool({
        "critical": {"count": 2, "fork": False, "interval": 0.5, "grace_period": 30,
                     "max_jobs": 100, "backend": "default"},
        "low": {"count": 1},
        "media": {"count": 1, "jobs_per_child": 50},
        "fast": {"count": 1, "fork": False, "prefetch": 16},
    })
    critical, low, media, fast = config.specs
    assert critical == WorkerSpec(key="critical", queues=("critical",), count=2, fork=False,
                                  interval=0.5, grace_period=30.0, max_jobs=100,
                                  backend="default")
    assert low == WorkerSpec(key="low", queues=("low",), count=1)
    assert (low.jobs_per_child, media.jobs_per_child) == (1, 50)
    assert (low.prefetch, fast.prefetch) == (None, 16)  # None: JOBQUEUE["PREFETCH"]


@pytest.mark.parametrize(("raw", "message"), [
    ({"critical": "two"}, "JOBQUEUE['POOL']['critical']: the worker count must be a whole "
                          "number >= 0, got 'two'"),
    ({"critical": -1}, "['critical']: the worker count must be"),
    ({"critical": True}, "['critical']: the worker count must be"),
    ({"critical": 1.5}, "['critical']: the worker count must be"),
    ({" , ": 1}, "[' , ']: the queue list is empty"),
    ({"a,b": 1, "a, b": 2}, "['a, b']: the same queue list as 'a,b'"),
    ({"critical": {"count": 1, "forks": False}}, "['critical']: unknown option(s) forks"),
    ({"critical": {"fork": False}}, "['critical']: the options form needs a 'count'"),
    ({"critical": {"count": 1, "fork": "no"}}, "['critical']['fork'] must be true or false"),
    ({"critical": {"count": 1, "interval": 0}}, "['critical']['interval'] must be a number"),
    ({"critical": {"count": 1, "grace_period": -1}}, "['critical']['grace_period'] must be"),
    ({"critical": {"count": 1, "max_jobs": 0}}, "['critical']['max_jobs'] must be a whole"),
    ({"critical": {"count": 1, "jobs_per_child": 0}},
     "['critical']['jobs_per_child'] must be a whole"),
    ({"critical": {"count": 1, "jobs_per_child": 5, "fork": False}},
     "['critical']: 'jobs_per_child' needs fork mode"),
    ({"critical": {"count": 1, "prefetch": 0}}, "['critical']['prefetch'] must be a whole"),
    ({"critical": {"count": 1, "prefetch": "8"}}, "['critical']['prefetch'] must be a whole"),
    ({"critical": {"count": 1, "backend": ""}}, "['critical']['backend'] must be a TASKS"),
    ({1: 1}, "JOBQUEUE['POOL'][1]: a queue list must be a string"),
    (["critical"], "JOBQUEUE['POOL'] must map queue lists to worker counts, got list"),
])
def test_invalid_entries_are_named_in_the_error(raw, message):
    with pytest.raises(ConfigurationError) as info:
        parse_pool(raw)
    assert message in str(info.value)


def test_resque_pool_environment_section_is_merged_and_others_dropped():
    data = {"foo": 1, "foo,bar,baz": 1, "*": 1,
            "production": {"foo,bar,baz": 4, "mail": 2}, "staging": {"foo": 7}}
    assert select_environment(data, "production") == {
        "foo": 1, "foo,bar,baz": 4, "*": 1, "mail": 2}
    assert select_environment(data, None) == {"foo": 1, "foo,bar,baz": 1, "*": 1}
    assert select_environment(data, "development") == {"foo": 1, "foo,bar,baz": 1, "*": 1}


def test_options_form_survives_environment_selection():
    data = {"critical": {"count": 2, "fork": False}, "production": {"critical": 5}}
    assert select_environment(data, None) == {"critical": {"count": 2, "fork": False}}
    assert select_environment(data, "production") == {"critical": 5}


def test_environment_comes_from_option_then_resque_pool_variables():
    assert environment_name("prod", {"RACK_ENV": "x"}) == "prod"
    assert environment_name(None, {"RAILS_ENV": "b", "RESQUE_ENV": "c"}) == "b"
    assert environment_name(None, {"RACK_ENV": "a", "RAILS_ENV": "b"}) == "a"
    assert environment_name(None, {"RESQUE_ENV": "c"}) == "c"
    assert environment_name(None, {}) is None


def test_resque_pool_yml_is_read_with_pyyaml(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "resque-pool.yml"
    path.write_text(RESQUE_POOL_YML)
    config = load_file(path, "production")
    assert [(s.key, s.count) for s in config.specs] == [
        ("foo", 1), ("foo,bar,baz", 4), ("*", 1), ("mail", 2)]
    assert config.source == str(path)
    assert [(s.key, s.count) for s in load_file(path, "staging").specs] == [
        ("foo", 7), ("foo,bar,baz", 1), ("*", 1)]


def test_yaml_without_pyyaml_says_how_to_get_it(tmp_path, monkeypatch):
    path = tmp_path / "resque-pool.yml"
    path.write_text(RESQUE_POOL_YML)
    monkeypatch.setitem(sys.modules, "yaml", None)  # what Python does when it is not installed
    with pytest.raises(ConfigurationError) as info:
        load_file(path)
    message = str(info.value)
    assert "needs PyYAML, which is not installed" in message
    assert "pip install 'django-jobqueue[yaml]'" in message and ".json" in message


def test_json_config_needs_no_pyyaml(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    path = tmp_path / "pool.json"
    path.write_text(json.dumps({"critical": 2, "production": {"critical": 3}}))
    assert [(s.key, s.count) for s in load_file(path).specs] == [("critical", 2)]
    assert [(s.key, s.count) for s in load_file(path, "production").specs] == [("critical", 3)]


def test_file_errors_name_the_file_and_entry(tmp_path):
    erb = tmp_path / "erb.yml"
    erb.write_text('foo: <%= ENV["N"] %>\n')
    with pytest.raises(ConfigurationError, match="uses ERB"):
        load_file(erb)
    bad = tmp_path / "bad.json"
    bad.write_text('{"critical": "many"}')
    with pytest.raises(ConfigurationError, match=r"bad.json\['critical'\]: the worker count"):
        load_file(bad)
    with pytest.raises(ConfigurationError, match="Cannot read pool config"):
        load_file(tmp_path / "missing.yml")
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="must hold a mapping"):
        load_file(listing)


def test_empty_yaml_file_is_an_empty_pool(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "empty.yml"
    path.write_text("# nothing yet\n")
    assert load_file(path) == PoolConfig(specs=(), source=str(path))


def test_load_prefers_the_file_over_the_setting(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text('{"from-file": 1}')
    assert [s.key for s in load(str(path), setting={"from-setting": 1}).specs] == ["from-file"]
    assert [s.key for s in load(None, setting={"from-setting": 1}).specs] == ["from-setting"]


# ------------------------------------------------------------------ system checks
def _ids(settings, **jobqueue):
    settings.JOBQUEUE = {**settings.JOBQUEUE, **jobqueue}
    return [(m.id, m.msg) for m in check_pool()]


def test_valid_pool_and_setup_pass_the_check(settings):
    assert _ids(settings, POOL={"critical": 2, "*": {"count": 1, "fork": False}},
                SETUP=["jobqueue.prewarm.models"]) == []


def test_invalid_pool_entry_is_a_system_check_error_naming_it(settings):
    found = _ids(settings, POOL={"critical": 2, "default,mail": "three"})
    assert found == [("jobqueue.E010", "JOBQUEUE['POOL']['default,mail']: the worker count "
                                       "must be a whole number >= 0, got 'three'")]


def test_setup_entry_that_cannot_be_imported_is_a_system_check_error(settings):
    found = _ids(settings, SETUP=["jobqueue.prewarm.models", "myapp.nope.warm", "jobqueue.conf"
                                  ".DEFAULTS"])
    assert [i for i, _ in found] == ["jobqueue.E011", "jobqueue.E011"]
    assert "'myapp.nope.warm' cannot be imported" in found[0][1]
    assert "'jobqueue.conf.DEFAULTS' is not callable" in found[1][1]


def test_pool_backend_must_be_a_jobqueue_backend(settings):
    found = _ids(settings, POOL={"critical": {"count": 1, "backend": "nope"}})
    assert [i for i, _ in found] == ["jobqueue.E012"]
    assert "JOBQUEUE['POOL']['critical'] uses backend 'nope'" in found[0][1]
