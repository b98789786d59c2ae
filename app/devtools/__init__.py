"""The development stack: mock LLM, embedded broker and Redis, `enricher dev` and `enricher send`.

The worker never imports this package; it needs the `dev` extra."""
