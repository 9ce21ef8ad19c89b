"""The subscriber lifecycle: signup, confirm, unsubscribe, preferences, export, erase, purge; the consent record; CSV import."""
