"""Training: the LightningModule (a leaf: only the CLI, the API and callbacks use it), its reference cache, its
torchmetrics and the cause of a non-finite loss."""
