"""The routing directory (annuaire): départements, lines, hours, holidays, closures."""
