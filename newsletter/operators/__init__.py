"""What operators hold: API tokens."""
