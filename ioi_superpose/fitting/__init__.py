"""What a fit is, below the LightningModule that runs it: its settings (`settings`), what it minimises
(`objectives`), and the value it yields (`fitted.FittedCombination`), which analyses, baselines and results read."""
