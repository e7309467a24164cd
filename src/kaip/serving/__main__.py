"""``python -m kaip.serving SPEC_PATH --model NAME``: the process local replicas and pods run."""

import sys

from kaip.serving.entrypoint import main

sys.exit(main())
