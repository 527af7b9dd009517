"""Model families and checkpoint import."""
