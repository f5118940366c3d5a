"""Sample twiml and their tests."""
