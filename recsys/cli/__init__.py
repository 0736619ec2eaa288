"""The ``recsys`` command: thin entry points that parse a Hydra config, call one runner of
``recsys.apps`` and print its lines. May import everything in ``recsys``; nothing imports it.
"""
