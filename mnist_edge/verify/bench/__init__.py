"""`mnist-edge bench`: stats (pure), worker (one format per process), report (tables, plot), run (rounds)."""
