"""Accounts: users, roles, passwords, and who may do what (permissions.py)."""
