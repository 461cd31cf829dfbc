"""Fixtures of the monitor's test modules: clients logged in with each permission.

Load with ``pytest_plugins = ["tests.monitor_fixtures"]``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.monitor_support import make_user


@pytest.fixture
def viewer(client: Any, django_user_model: Any) -> Any:
    """A client logged in as staff with ``view_monitor`` only."""
    client.force_login(make_user(django_user_model, "viewer", "view_monitor"))
    return client


@pytest.fixture
def manager(client: Any, django_user_model: Any) -> Any:
    """A client logged in as staff with ``manage_monitor``."""
    client.force_login(make_user(django_user_model, "manager", "manage_monitor"))
    return client
