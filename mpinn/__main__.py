import sys

from mpinn.cli import main

sys.exit(main())
