"""``python -m paragraph_planning {build,run,list}``: see :mod:`paragraph_planning.book.cli`."""
import sys

from .book.cli import main

sys.exit(main())
