"""Serving code: the online inference services and the reference social backend."""
