import gc
import sys

gc.disable()        # until the probes are attached (cli.main says why)
_interrupted = []


def _unraisable(u, default=sys.unraisablehook):
    # a Ctrl-C while importing can land where the interpreter cannot raise it, inside an
    # import's lock ("Exception ignored in ..."): noted, main() then ends at once
    if u.exc_type is not None and issubclass(u.exc_type, KeyboardInterrupt):
        _interrupted.append(u.exc_type)
    else:
        default(u)


sys.unraisablehook = _unraisable
try:
    from ptrace_lang.cli import main
except KeyboardInterrupt:  # Ctrl-C while starting: nothing is loaded yet
    sys.exit(130)

sys.exit(main(interrupted=_interrupted))
