"""The support team's tools for templates: `enricher prompts check|render`."""
