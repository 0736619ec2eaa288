"""Jobs that move data between the reference social backend (``serving``) and the library
(``recsys``). Pipelines may import both; neither imports pipelines.

* :mod:`pipelines.social_events` - the backend's interaction event log exported to Parquet in
  the schema of the synthetic social data set, so the rankers train on what the backend saw.
"""
