"""The backend's services. Each module is one service; none imports another. They share the
storage adapters and the event bus through :class:`~serving.social.context.Context`, and the
read-model helpers in :mod:`serving.social.views`."""
