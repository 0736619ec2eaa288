"""recsys: ranking and recommendation research at social-app scale."""

__version__ = "0.1.0"
