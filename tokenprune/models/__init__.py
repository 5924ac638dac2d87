"""Models tokenprune builds in code (no downloads): tiny random-weight VLMs of every supported family."""
