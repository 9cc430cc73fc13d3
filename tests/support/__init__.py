"""What the tests share: stand-ins, processes and helpers, imported as `from support.x import y`
(tests/ is on sys.path: pyproject.toml's pythonpath). Fixtures and hooks stay in tests/conftest.py."""
