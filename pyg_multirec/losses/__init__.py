"""(filled in as modules land)."""
