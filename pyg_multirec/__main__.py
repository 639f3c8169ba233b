"""``python -m pyg_multirec``: the ``pyg-multirec`` command (see :mod:`pyg_multirec.cli`)."""

from pyg_multirec.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
