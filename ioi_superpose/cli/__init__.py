"""Command lines: training (LightningCLI), toy-model training, batched groups, sweeps, the report, the benchmark."""
