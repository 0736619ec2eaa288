"""Data: readers of real formats (``readers``), the synthetic social app (``synthetic``),
Polars preprocessing to Parquet (``preprocess``, ``prepared``), splits (``split``), the batch
loader (``loader``: Parquet -> tensors -> KeyedJaggedTensor), and in-memory interaction data for
retrieval: the per-user chronological split and id maps (``interactions``), histories
(``history``), feature tables and pair batches (``tables``) and the two-tower's data set
(``retrieval_data``); the progress lines of long work, for every layer above (``progress``).

May import ``recsys.types`` only (and third-party data libraries and torch/torchrec for
tensors); every other layer of ``recsys`` may import it.
"""
