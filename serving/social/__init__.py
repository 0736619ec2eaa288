"""The reference social backend: feed, stories, fanout, media and interactions.

``api/`` (app, shared dependencies, one router per service), ``services/`` (one module per
service, none importing another), ``storage/`` (interfaces, SQL and Redis adapters, the
factory), ``media/`` (upload processing), the modules every layer shares (``domain``: records
and errors; ``views``: the JSON read models; ``blobsign``: signed, expiring blob URLs;
``context``, ``clock``, ``cachekeys``), and the composition root (``backend``, ``workers``,
``cli``, ``demo``, ``settings``). Never imports torch, ``recsys`` or ``pipelines``; the
import contracts in pyproject.toml hold the layering."""
