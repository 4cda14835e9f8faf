"""Shared pytest configuration: the test bed fixtures (`testbed`, `cards`)."""

pytest_plugins = ["hwgate_testbed.pytest_plugin"]
