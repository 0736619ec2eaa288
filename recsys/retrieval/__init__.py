"""recsys.retrieval: candidate retrieval (baselines, negative sampling, the ANN index)."""
