"""Analyses that run the model on a fitted combination or on head sets: causal scrubbing of head-level hypotheses
(`analyses.scrubbing`)."""
