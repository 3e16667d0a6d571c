"""Periodic jobs, run by `flask --app app scheduler` in a process of their own."""
