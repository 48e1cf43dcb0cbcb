import sys

from vnetlab.cli import main

sys.exit(main())
