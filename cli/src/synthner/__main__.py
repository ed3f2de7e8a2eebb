import sys

from synthner.main import main

sys.exit(main())
