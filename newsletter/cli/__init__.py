"""The `newsletter` command."""
