"""Result lookup and Stats (``monitor.views_misc``)."""

from __future__ import annotations

import pytest

from tests.monitor_support import M, fail_all, page_text
from tests.testapp.tasks import add, boom

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.monitor_fixtures"]


def test_result_lookup(jq, viewer):
    result = add.enqueue(2, 3)
    response = viewer.get(M + f"results/?id={result.id}")
    assert response.context["record"].status == "READY"
    assert "tests.testapp.tasks.add" in page_text(response) and "[2,3]" in page_text(response)
    missing = viewer.get(M + "results/?id=%3Cscript%3Enope")
    assert b"No result with id" in missing.content
    assert b"<script>nope" not in missing.content
    assert viewer.get(M + "results/").context["looked_up"] is False


def test_result_lookup_shows_errors(jq, viewer):
    result = boom.enqueue("<x>")
    fail_all(jq.broker)
    html = page_text(viewer.get(M + f"results/?id={result.id}"))
    assert "FAILED" in html and "builtins.ValueError" in html and "<x>" not in html


def test_stats_show_server_and_record_counts(jq, viewer):
    add.enqueue(1, 1)
    response = viewer.get(M + "stats/")
    assert response.context["keys"]["queued jobs"] == 1
    assert dict(response.context["server"])["redis_version"]
    assert b"never <code>KEYS *</code>" in response.content
