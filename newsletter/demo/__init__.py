"""`make demo`: seed data, the built-in inbox, starting everything."""
