"""The one exception type users see: its message is a single line that names
the thing that went wrong and the fix. The CLI prints it without a traceback."""


class RunnerError(Exception):
    pass
