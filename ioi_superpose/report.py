"""`python -m ioi_superpose.report`: the markdown report of runs and sweeps (`results/report.py`); kept here so the
documented command works."""

from ioi_superpose.results.report import main

if __name__ == "__main__":
    main()
