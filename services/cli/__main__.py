"""``python -m services.cli`` == ``proofnet``."""

from services.cli import main

main()
