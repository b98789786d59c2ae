"""The template studio: the support team's page for reading, rendering and trying templates,
served by the chat gateway (the `chat` extra)."""
