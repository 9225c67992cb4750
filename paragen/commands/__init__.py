"""`paragen <verb>` implementations: each module exposes `add_arguments(parser)` and `run(args)`."""
