"""The remote LLM: the client, its retries, limits, breaker and the errors it translates."""
