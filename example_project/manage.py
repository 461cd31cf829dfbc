#!/usr/bin/env python
"""Django's command-line utility for the jobqueue example site."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    # Let the example run straight from a checkout: fall back to the repository's own
    # ``jobqueue`` package when it is not installed (an installed copy still wins).
    sys.path.append(str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
