"""``python -m protoshot`` runs the command line."""

from protoshot.cli import main

main()
