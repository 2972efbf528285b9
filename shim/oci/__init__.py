"""The OCI spec rewrite: what Create decides from config.json (plan.py), and how it is applied."""
