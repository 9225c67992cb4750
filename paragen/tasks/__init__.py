"""Tasks: assemble components from a config and run them. Registered with `@register_task`."""
from paragen.tasks.build import build_task, load_trained_task
from paragen.tasks.translation import TranslationTask

__all__ = ["TranslationTask", "build_task", "load_trained_task"]
