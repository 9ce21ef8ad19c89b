"""Job listings: feed formats, validation and the store, matching a reader's search."""
