"""Ground truth: planted models, support scoring, and the head-finding benchmark (exhaustive head-subset search, the
truth it is scored against, is `analyses.exhaustive`)."""
