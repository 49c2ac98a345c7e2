"""Results: `summary.json` and the run's figures, statistics, Pareto fronts, max-activating prompts, the report."""
