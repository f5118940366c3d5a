"""Sample flows and their tests."""
