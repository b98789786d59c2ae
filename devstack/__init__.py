"""The development stack: mock LLM, embedded broker and Redis, `enricher dev` and `enricher send`.

A package of its own, outside `app/`: the worker never imports it, and it needs the `devstack`
extra (servers the worker never runs)."""
