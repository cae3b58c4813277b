"""python -m lab.bench: the same as ./run_all.sh bench."""
import sys

from lab.bench.command import main
from lab.stack import Stack

sys.exit(main(sys.argv[1:], Stack.from_env()))
