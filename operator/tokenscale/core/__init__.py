"""Pure maths and policies: standard library only, time passed in. See docs/architecture.md."""
