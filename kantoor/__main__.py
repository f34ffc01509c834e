import sys

from kantoor.cli.main import main

sys.exit(main())
