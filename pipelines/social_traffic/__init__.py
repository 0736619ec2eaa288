"""Synthetic traffic through the social backend: users, follows, posts, impressions and
engagement whose pattern a ranker can learn (the first step of the closed loop).

    python -m pipelines.social_traffic [backend overrides] [users=60] [rounds=6] [seed=0]

Modules: ``traffic`` (:func:`simulate`, the population and its behaviour), ``cli`` (the job's
entry point). The backend is driven through its public composition root
(``serving.social.backend.open_backend`` and the services it exposes), on a simulated clock
that ends at the present, so every write goes through the same code as an API request: the
outbox, fanout and the event log that :mod:`pipelines.social_events` exports.
"""
