"""A Hydra launcher that runs the trials of a sweep as Ray tasks (``hydra/launcher=ray``)."""
