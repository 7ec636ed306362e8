import sys

from maxrf.cli.main import main

sys.exit(main())
