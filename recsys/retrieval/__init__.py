"""recsys.retrieval: candidate retrieval: baselines (most-popular, implicit ALS), negative
sampling and the sampled-softmax losses (``sampling``), the typed FAISS index wrapper
(``index``, ``index_gpu``, ``index_report``), full-corpus evaluation of top-K lists
(``evaluate``) and indexes built from a model's vectors and saved (``build``).

May import ``recsys.metrics``, ``recsys.data`` and ``recsys.types``; never models, train,
config or above.
"""
