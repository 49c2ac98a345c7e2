"""`python -m ioi_superpose.benchmark`: the ground-truth benchmark (`cli/benchmark.py`);
kept here so the documented command works."""

from ioi_superpose.cli.benchmark import main

if __name__ == "__main__":
    main()
