"""Training: the LightningModule, its reference cache, objectives, metrics and the minimal-set step."""
