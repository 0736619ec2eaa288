"""The reference social backend: feed, stories, fanout, media and interactions."""
