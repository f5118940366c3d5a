"""One router per resource, assembled in ``ivrsim.api.app``."""
