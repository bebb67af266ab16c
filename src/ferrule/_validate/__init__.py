"""``ferrule validate``: a conformance checker for a built plugin library."""
