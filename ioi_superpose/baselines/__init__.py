"""Baselines: activation / attribution / path patching, direct logit attribution, and their callbacks."""
