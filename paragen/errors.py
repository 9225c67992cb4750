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


class InputError(DataError):
    """One input line a task cannot read (a sentence pair without its tab). `index` counts
    from 0 in the lines given, so `generate` names the file's line and `serve` the request's
    `inputs[index]`; `reason` says what was expected."""

    def __init__(self, index: int, reason: str, first_line: int = 1):
        super().__init__(f"input line {first_line + index}: {reason}")
        self.index, self.reason = index, reason
