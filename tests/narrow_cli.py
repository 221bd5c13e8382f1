"""`python tests/narrow_cli.py <stage> ...`: deeppose's command line (what `python -m deeppose`
runs) on AlexNet with fc6 and fc7 NARROW_FC wide, for the tests that kill a real training process:
its checkpoints take tens of MB, not AlexNet's 466-700 MB (tests/narrow_network.py)."""

from narrow_network import narrowed

from deeppose.cli import main

if __name__ == "__main__":
    with narrowed():
        status = main()
    raise SystemExit(status)
