"""A training step of the exact VM as an operator trace (issue 10; ``protocol.trace``)."""
