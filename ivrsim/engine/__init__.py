"""The call engine: clock, call state machine, actions, callee parties, recorder, event bus."""
