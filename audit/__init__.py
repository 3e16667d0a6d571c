"""The audit log: who changed what in the directory and the accounts, and when."""
