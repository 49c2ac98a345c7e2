"""Results: `summary.json` and the run's figures, the baselines' records, statistics, Pareto fronts, the report."""
