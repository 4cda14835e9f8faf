"""The ``hwgate`` admin CLI (grpcurl conventions plus friendly verbs)."""
