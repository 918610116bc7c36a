"""``python -m zoolens.cli``: the ``zoolens`` command."""

from zoolens.cli import main

if __name__ == "__main__":
    main()
