"""Exception types of the core, one per failure class.

Every message says what was expected, what was found, and how to fix it.
"""


class MixGRPOError(Exception):
    """Base class of every error the core raises on purpose."""


class ScheduleError(MixGRPOError, ValueError):
    """A time grid, window or sampling plan that cannot work.

    Examples: a window larger than the schedule, a negative shift, a compression ratio
    outside (0, 1], an unknown window strategy or solver name.
    """


class ResumeError(MixGRPOError, ValueError):
    """Saved state that does not belong to the object it is loaded into."""


class PromptError(MixGRPOError, ValueError):
    """A prompt that is empty or cannot be understood (e.g. by the rule-based shapes reward)."""


class ImageInputError(MixGRPOError, ValueError):
    """Images of the wrong shape, dtype or value range for a reward or a model."""


class ModelLoadError(MixGRPOError, OSError):
    """A model folder or weight file that is missing, incomplete or of an unsupported architecture."""


class TrainingStopped(MixGRPOError, RuntimeError):
    """A run that cannot go on: every reward failed, or the updates kept diverging, several times in a row."""
