"""Allow ``python -m cumx_cli``."""

from cumx_cli.app import main

if __name__ == "__main__":
    main()
