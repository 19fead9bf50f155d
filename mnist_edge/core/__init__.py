"""The core: the standard library and numpy only (errors, the format registry, settings, metadata, data, files)."""
