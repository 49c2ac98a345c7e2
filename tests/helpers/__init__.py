"""Helpers the tests hand to subprocesses (importable as `tests.helpers` with the repository on PYTHONPATH)."""
