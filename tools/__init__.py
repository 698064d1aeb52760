"""Developer tools: fixture/value-set builders and the harness shared by tests/ and bench/."""
