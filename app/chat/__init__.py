"""`enricher chat`: the gateway between browsers and the topics, and its chat page (the `chat` extra)."""
