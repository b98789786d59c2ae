"""The OpenAI-compatible mock LLM: server, state and admin API, quotas, prompt cache."""
