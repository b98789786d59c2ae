"""Handing a conversation to a human: the support team's rules, the conversation's state in Redis, the
control topic's commands."""
