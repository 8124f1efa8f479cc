"""Command-line dispatcher and the demo chain; imports the three packages lazily."""
