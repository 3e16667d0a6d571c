"""Call tracking: calls, dialled legs, webhook events."""
