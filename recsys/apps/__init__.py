"""Command runners: one function per ``recsys`` command that takes a composed config and
composes the library, returning what it wrote and the lines to print (headline numbers and
output paths last).

* :mod:`recsys.apps.train` - ``recsys train`` / ``quickstart`` (either task) and
  ``recsys data prepare``;
* :mod:`recsys.apps.evaluate` - ``recsys evaluate`` of a ranker or a two-tower run;
* :mod:`recsys.apps.index` - ``recsys index build``;
* :mod:`recsys.apps.explore` - ``recsys explore`` (the funnel over a ranker and a two-tower run);
* :mod:`recsys.apps.summaries` - the closing lines every command prints;
* :mod:`recsys.apps.console` - the known library log lines dropped from the console (``-v``).

Sits between ``recsys.cli`` (which parses and calls one runner) and ``recsys.config`` (whose
builders turn a config into plain objects). May import ``recsys.config`` and everything below
it; never ``recsys.cli``, Hydra or OmegaConf (configs arrive composed and leave as requests).
"""
