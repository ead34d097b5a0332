"""Reports rendered only from run records (DESIGN.md §6): tables, figures, provenance."""
