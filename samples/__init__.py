"""Example flows, callers, a TwiML app and the tests a user copies; a package so that its conftest does not shadow tests/conftest.py (both would be the module conftest)."""
