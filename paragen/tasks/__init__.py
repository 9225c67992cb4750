"""Tasks: assemble components from a config and run them. Registered with `@register_task`."""
from paragen.tasks.translation import TranslationTask

__all__ = ["TranslationTask"]
