"""``python -m ivrsim`` runs the command line."""

from ivrsim.cli import main

main()
