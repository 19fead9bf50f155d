"""The torch side: models, training, checkpoints, the torch runtimes, plots and every exporter."""
