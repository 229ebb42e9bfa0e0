"""One module per detection method."""
