"""The social feature store's definitions, as ``feast apply`` reads them from this folder.

The objects come from :func:`recsys.features.definitions.social_definitions` (the one home of
the definitions; code opens the same store with :func:`recsys.features.store.open_store`),
over the Parquet sources in ``data/sources`` next to this file. (Named so that no other
importable module shadows it: Feast imports each file here by its bare name.)
"""

from pathlib import Path

from recsys.features.definitions import social_definitions

_defs = social_definitions(Path(__file__).resolve().parent / "data" / "sources")

user = _defs.entities["user"]
post = _defs.entities["post"]
author = _defs.entities["author"]
user_author = _defs.entities["user_author"]

post_view = _defs.views["post"]
user_profile = _defs.views["user_profile"]
follow_pair = _defs.views["follow_pair"]
author_followers = _defs.views["author_followers"]
user_follows = _defs.views["user_follows"]
user_activity = _defs.views["user_activity"]
author_posting = _defs.views["author_posting"]

request_time = _defs.request
post_age = _defs.post_age
