"""Error types that the command line turns into one clear line and a non-zero exit."""


class ParagenError(Exception):
    """Base class: a user-facing problem (bad config, bad data), not a bug in paragen."""


class ConfigError(ParagenError):
    """A config key is unknown, missing or of the wrong type; the message names its path."""


class DataError(ParagenError):
    """An input file is missing, misaligned or not decodable; the message names file and line."""


class TrainingInterrupted(ParagenError):
    """Ctrl-C / SIGTERM during training: a checkpoint was saved; rerunning the same command
    resumes."""
