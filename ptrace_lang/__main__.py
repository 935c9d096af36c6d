import sys

try:
    from ptrace_lang.cli import main
except KeyboardInterrupt:  # Ctrl-C while starting: nothing is loaded yet
    sys.exit(130)

sys.exit(main())
