"""Online inference on ONNX Runtime, with no torch at request time (issue #10).

Modules: ``errors`` (:class:`RequestError`, the one bad-request error), ``columns`` (request
rows -> typed columns, counters), ``hashing`` (FNV-1a 64 in NumPy), ``preprocess`` (a ranker
export's preprocessing: raw rows -> model feeds), ``session`` (ONNX Runtime settings,
providers, signature checks, validation of pre-built inputs), ``ranker`` (:class:`OnnxRanker`),
``retrieval_inputs`` (a two-tower export's user and item feeds), ``retriever``
(:class:`FaissRetriever`, :class:`Recommender`).

Imports: numpy, pyarrow, onnxruntime, faiss, and of the library only the two torch-free modules
``recsys.export.manifest`` and ``recsys.ranking.value`` (an import-linter contract and a test
that loads these modules and asserts torch was not loaded keep it so). ``serving.social`` may
import ``serving.inference.ranker`` (the in-process ranker) and nothing else of this package.
"""
