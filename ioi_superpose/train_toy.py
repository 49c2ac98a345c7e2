"""`python -m ioi_superpose.train_toy`: the toy-model training CLI (`cli/train_toy.py`);
kept here so the documented command works."""

from ioi_superpose.cli.train_toy import main

if __name__ == "__main__":
    main()
