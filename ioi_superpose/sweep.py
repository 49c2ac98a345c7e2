"""`python -m ioi_superpose.sweep`: the sweep runner (`cli/sweep.py`);
kept here so the documented command works."""

from ioi_superpose.cli.sweep import main

if __name__ == "__main__":
    main()
