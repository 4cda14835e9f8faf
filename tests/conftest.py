"""Shared pytest configuration: the test bed fixtures (`testbed`, `cards`) and the
end-of-session scan of every daemon log and audit file for PINs and secrets."""

pytest_plugins = ["hwgate_testbed.pytest_plugin", "support.logscan"]
