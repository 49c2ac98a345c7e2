"""`python -m ioi_superpose.train_batched`: a batched group of sweep points (`cli/train_batched.py`);
kept here so the documented command works."""

from ioi_superpose.cli.train_batched import main

if __name__ == "__main__":
    main()
