"""Media handling for the social backend: image placeholders and processing."""
