"""``python -m pipelines.social_traffic ...``: see :mod:`pipelines.social_traffic.cli`."""

from pipelines.social_traffic.cli import main

if __name__ == "__main__":
    main()
