"""Serving code: the reference social backend (``social``) and, with issue #10, the online
inference services (``inference``). ``serving.social`` never imports torch or ``recsys``;
nothing in ``recsys`` imports ``serving`` (commands reach it through entry points)."""
