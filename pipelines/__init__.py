"""Jobs that chain library calls and move data between the reference social backend
(``serving``) and the library (``recsys``): ingest -> Parquet -> features -> training sets.

What lives here: one subpackage per job, each with its own entry point
(``python -m pipelines.<job>``).

* :mod:`pipelines.social_events` - the backend's interaction event log exported to Parquet in
  the schema of the synthetic social data set, so the rankers train on what the backend saw.
* :mod:`pipelines.social_traffic` - a synthetic population driven through the backend (its
  composition root ``serving.social.backend.open_backend`` and the services it exposes).
* :mod:`pipelines.job_options` - the ``key=value`` options every job's entry point parses.

What a job may import (the direction of ARCHITECTURE.md): ``recsys`` (the library; for data sets
their schema modules, e.g. :mod:`recsys.data.synthetic.schema`) and the public interfaces of
``serving.social``: its domain types (``serving.social.domain``), the storage interfaces
(``serving.social.storage.interfaces``, e.g. the event reader ``MetadataStore.iter_events``),
the storage factory (``serving.social.storage.factory``, e.g. ``open_metadata_store``), the
composition root (``serving.social.backend``) and the settings loader
(``serving.social.cli.load_settings``); never a storage adapter
(``serving.social.storage.sql`` / ``.redis``), a service or the API. Neither ``recsys`` nor
``serving`` imports ``pipelines``.
"""
