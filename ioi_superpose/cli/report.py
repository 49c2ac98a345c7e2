"""`python -m ioi_superpose.cli.report`: the markdown report of runs and sweeps (the logic is `results/report.py`)."""

from ioi_superpose.results.report import main

if __name__ == "__main__":
    main()
