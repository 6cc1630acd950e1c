import sys

from infra.chaos.run import main

sys.exit(main())
