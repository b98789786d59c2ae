"""The operator's commands: tools for a running deployment, on the runtime dependencies only."""
