"""The one error a user sees: a single line, exit status 2, no traceback."""

import functools
import sys

EXIT_USAGE = 2


class PipelineError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def cli(main):
    """Wrap a stage's main(): PipelineError becomes `error: ...` on stderr and exit status 2.

    Anything else is a bug in the pipeline and keeps its traceback.
    """

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
