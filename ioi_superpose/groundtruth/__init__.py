"""Ground truth: planted models, exhaustive head-subset search, support scoring, and the head-finding benchmark."""
