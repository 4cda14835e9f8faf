"""The gRPC edge: what servicers (hwgated.api) and interceptors (auth, ops) share.

``status`` turns an error into a status + ErrorInfo (the reason -> code table
lives there, once), ``handlers`` rewraps method handlers for interceptors, and
``audited`` records an RPC's act with its outcome. Nothing here imports
``hwgated.api``, so the interceptors can use it without depending on the
servicers (which themselves depend on ``hwgated.auth``).
"""
