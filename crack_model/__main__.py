import sys

from crack_model.cli.main import main

sys.exit(main())
