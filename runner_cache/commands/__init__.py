"""One module per ``runner-cache`` sub-command; each exposes ``register(subparsers)``."""
