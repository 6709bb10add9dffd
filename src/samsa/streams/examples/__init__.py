"""Example applications for samsa.streams."""
