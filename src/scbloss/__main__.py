"""`python -m scbloss`: the form the workflow's rules use, so the Python of the rule's environment runs it."""

import sys

from .cli import main

sys.exit(main())
