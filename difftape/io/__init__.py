"""Output: text for people and strict JSON for scripts."""
