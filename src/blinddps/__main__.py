"""``python -m blinddps``: the ``blinddps`` command (also under ``torchrun -m blinddps``)."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
