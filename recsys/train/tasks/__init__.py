"""The tasks the training loop drives (:class:`recsys.train.task.Task`).

* :mod:`recsys.train.tasks.ranking` - rankers: BCE per label, AUC / logloss / NE / calibration;
* :mod:`recsys.train.tasks.retrieval` - the two-tower: sampled softmax (or BCE) over in-batch
  and uniform negatives, full-corpus Recall / NDCG / HitRate@K and MRR.

May import ``recsys.models``, ``recsys.modules``, ``recsys.metrics``, ``recsys.retrieval``,
``recsys.data``, ``recsys.types`` and the rest of ``recsys.train``; never config, apps or cli.
"""
