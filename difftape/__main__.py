"""``python -m difftape``: the same command line as the ``difftape`` console script."""

from difftape.cli import main

if __name__ == "__main__":
    main()
