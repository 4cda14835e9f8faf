"""hwgate: client library and admin CLI for the hwgated hardware gateway."""

__version__ = "0.1.0"
