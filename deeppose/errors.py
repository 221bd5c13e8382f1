"""The one exception type that the CLI turns into a one-line message instead of a traceback."""


class DeepPoseError(Exception):
    """A problem with the user's input or machine, stated so the user can fix it.

    The message must name the file, parameter or device at fault and what is allowed.
    """
