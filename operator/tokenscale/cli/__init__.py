"""The command line: `tokenscale ...` (typer)."""
