"""The engine: hook names, base and reference runs, the one patched run of head z, and the fast runner."""
