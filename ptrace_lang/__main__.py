import sys

from ptrace_lang.cli import main

sys.exit(main())
