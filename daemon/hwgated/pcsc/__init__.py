"""The card transport: pcscd through pyscard, one worker thread per reader.

Only this package (with the HSM layer for PKCS#11) touches hardware libraries.
It was a namespace package without this file, which wheels built by
``packages.find`` and import-linter's graph both silently left out.
"""
