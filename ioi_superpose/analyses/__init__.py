"""Analyses that run the model on a fitted combination or on head sets: the minimal-set step, rotation dimensions,
circuit criteria, head types, max-activating prompts and corpus positions, per-prompt recovery, exhaustive
head-subset search (the ground truth), and causal scrubbing of head-level hypotheses (`analyses.scrubbing`)."""
