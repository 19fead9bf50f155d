"""One small module per exporter family; each function is `export(job, fmt, tmp) -> ModelMetadata`."""
