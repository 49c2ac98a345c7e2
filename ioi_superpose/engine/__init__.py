"""The engine: the shared vocabulary, the patch protocol, the logit-difference metric, base and reference runs, the
one patched run of head z, cuts and circuits (`rest`), ablations, and the fast runner. It imports nothing above
`data` and `models`."""
