import sys

from probes.agent.cli import main

sys.exit(main())
