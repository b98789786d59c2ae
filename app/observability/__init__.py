"""What the operator sees: JSON logs, metrics, health pages, redaction of secrets."""
