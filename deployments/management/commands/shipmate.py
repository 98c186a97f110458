"""`manage.py shipmate …`: operator commands.

manage.py shipmate settle-stopped --worker HOST:NODE
    Settle the deployments a stopped worker left running (make run calls it after
    it had to kill the worker, and before it starts one).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from deployments.services import runs


class Command(BaseCommand):
    help = "Shipmate operator commands (settle-stopped)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        settle = sub.add_parser("settle-stopped", help="settle the runs a stopped worker left running")
        settle.add_argument("--worker", required=True, help='the worker as recorded, "host:node"')

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "settle-stopped":
            count = runs.deployments_settle_stopped(worker=options["worker"])
            if count:
                self.stdout.write(f"settled {count} deployment(s) that a stop cut off")
