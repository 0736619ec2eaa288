"""The ``recsys`` command: thin entry points that parse a Hydra config, call one runner of
``recsys.apps`` and print its lines; ``errors``: an error as one line (the traceback with
``-v``). May import everything in ``recsys`` but ``recsys.api``; nothing imports it.
"""
