"""``python -m pipeline.contract [--write | --check]``: export the event JSON Schema."""

import sys

from pipeline.contract.json_schema import main

sys.exit(main())
