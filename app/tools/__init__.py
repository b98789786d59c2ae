"""The tools the LLM may call while it writes a reply, served for the asking customer (`toolbox.py`)."""
