"""``python -m pipelines.feature_sources``."""

from pipelines.feature_sources.cli import main

main()
