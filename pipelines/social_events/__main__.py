"""``python -m pipelines.social_events ...``: see :mod:`pipelines.social_events.cli`."""

from pipelines.social_events.cli import main

if __name__ == "__main__":
    main()
