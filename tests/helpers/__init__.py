"""Test-only helpers shared by several test modules (a test module never imports another one:
tests/test_layout.py checks). Imported as ``tests.helpers.<module>`` (the repository root is on
``sys.path`` under ``python -m pytest``); some older modules import ``helpers.<module>``, which
works because pytest puts ``tests/`` on ``sys.path``."""
