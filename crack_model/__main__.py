import sys

from crack_model.cli import main

sys.exit(main())
