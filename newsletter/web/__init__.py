"""Blueprints: they parse and validate, call the domain, commit, and render."""
