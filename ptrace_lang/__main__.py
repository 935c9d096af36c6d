import gc
import sys

gc.disable()        # until the probes are attached (cli.main says why)
try:
    from ptrace_lang.cli import main
except KeyboardInterrupt:  # Ctrl-C while starting: nothing is loaded yet
    sys.exit(130)

sys.exit(main())
