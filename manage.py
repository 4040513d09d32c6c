#!/usr/bin/env python
"""Django's command-line utility; configuration errors end in one line naming the variable."""

import importlib
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config.env import ConfigError

    try:
        importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")

    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
