"""`python -m ioi_superpose.train`: the training CLI (`cli/train.py`);
kept here so the documented command works."""

from ioi_superpose.cli.train import main

if __name__ == "__main__":
    main()
