"""Cross-cutting pieces: settings, database session, personal-data helpers."""
