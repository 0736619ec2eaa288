"""The social backend's event log exported to Parquet for the rankers.

Run it as ``python -m pipelines.social_events [backend overrides] out_dir=DIR [options]``
(:mod:`.cli` lists the options; ``--help`` prints them), or call :func:`export_events` with a
metadata store.

One output row per impression ``(user, post, ts)`` in the schema of the synthetic social data
set (:data:`recsys.data.synthetic.schema.SOCIAL_SCHEMA` without the truth columns ``p_*``, which
only a generator knows), with the dtypes its source yields:

* labels (Float32 0/1): ``like comment share save`` - the user did it on that post at most
  ``attribution_window_s`` after the impression, each action credited to the user's latest
  earlier impression of the post only (a post seen twice, then liked, is one positive, not two);
  ``long_dwell`` - the impression's ``dwell_ms >= long_dwell_ms``.
* dense (Float64): ``post_age_hours`` at the impression, ``author_followers_log``
  (``log1p`` of the author's follower count), ``user_follow_count_log`` (``log1p`` of how many
  the user follows), ``post_length`` (caption characters).
* sparse (Utf8, null where unknown): ``user_id post_id author_id topic media_type country
  age_bucket``, ``user_activity`` (``low``/``medium``/``high``: the user's impression count in the
  export at most the median of all exported users' counts, at most the 85th percentile, or above,
  the synthetic generator's 50/35/15 split) and ``is_following`` (``"0"``/``"1"``).
* ``timestamp`` (Int64 unix seconds, the impression's time floored).

The rows' follower and followee counts and ``is_following`` are read from the current follow
graph, so they are as of the export, not as of each impression (the synthetic generator's are
point in time); everything else is point in time. The backend also logs every follow and
unfollow (its follow log): with ``history`` the export writes that log and the rows' posts
beside the parts (:mod:`.history`), from which the feature store
(:mod:`pipelines.feature_sources`, :mod:`recsys.features`) rebuilds those features as of each
impression.

Rows are in ``(ts, seq)`` order. The log is read twice, in batches (pass 1 counts impressions per
user for ``user_activity`` and fixes the last ``seq``, so a log that grows meanwhile still
exports one consistent range); memory holds the impressions of one attribution window, the
per-user counts and caches of the posts, users and follow sets met.

Output (replaced as a whole: written into a hidden sibling folder, then renamed into place):
``out_dir/part-00000.parquet ...`` and ``out_dir/_manifest.json`` (schema, counts, label rates,
time and seq range, source, parameters). The export is a function of the log and the backend's
state: exporting again unchanged gives byte-identical files.

Modules, in import order:

* :mod:`.writer` - Parquet part files, the manifest, the atomic replace of ``out_dir``.
* :mod:`.attribution` - the two passes over the log: impressions, actions credited to them,
  feature rows in :data:`SCHEMA` (the synthetic data set's, :mod:`recsys.data.synthetic.schema`).
* :mod:`.history` - ``follows.parquet`` (the follow log) and ``posts.parquet`` beside the parts.
* :mod:`.export` - :func:`export_events`: checks the request, runs the passes into the writer.
* :mod:`.cli` (and ``__main__``) - argument parsing, the backend's settings and store.
"""

from pipelines.social_events.attribution import ACTIONS, LABELS, SCHEMA
from pipelines.social_events.cli import USAGE, main, open_metadata, parse_args
from pipelines.social_events.export import (
    DEFAULT_ATTRIBUTION_WINDOW_S,
    DEFAULT_LONG_DWELL_MS,
    DEFAULT_MAX_LATENESS_S,
    DEFAULT_READ_BATCH,
    DEFAULT_ROWS_PER_FILE,
    ExportSummary,
    export_events,
)
from pipelines.social_events.writer import FORMAT, MANIFEST, PART_PATTERN, ExportError

__all__ = [
    "ACTIONS",
    "DEFAULT_ATTRIBUTION_WINDOW_S",
    "DEFAULT_LONG_DWELL_MS",
    "DEFAULT_MAX_LATENESS_S",
    "DEFAULT_READ_BATCH",
    "DEFAULT_ROWS_PER_FILE",
    "FORMAT",
    "LABELS",
    "MANIFEST",
    "PART_PATTERN",
    "SCHEMA",
    "USAGE",
    "ExportError",
    "ExportSummary",
    "export_events",
    "main",
    "open_metadata",
    "parse_args",
]
