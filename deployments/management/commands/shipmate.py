"""`manage.py shipmate …`: operator commands.

manage.py shipmate export > shipmate-config.yaml
    Applications, environments (policy, variables by name for secrets, freeze
    windows) and placements as YAML; no secret values.
manage.py shipmate apply -f FILE [--dry-run]
    Show what the file changes, then apply it in one transaction (audited). With
    --dry-run, only show it. Applying the same file again changes nothing.
manage.py shipmate settle-stopped --worker HOST:NODE
    Settle the deployments a stopped worker left running (make run calls it after
    it had to kill the worker).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from deployments.services import config, lifecycle


class Command(BaseCommand):
    help = "Shipmate operator commands: export, apply, settle-stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("export", help="write the configuration as YAML to stdout")
        apply = sub.add_parser("apply", help="apply a configuration file")
        apply.add_argument("-f", "--file", required=True, help="the YAML file ('-' for stdin)")
        apply.add_argument("--dry-run", action="store_true", help="show the changes, change nothing")
        settle = sub.add_parser("settle-stopped", help="settle the runs a stopped worker left running")
        settle.add_argument("--worker", required=True, help='the worker as recorded, "host:node"')

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "export":
            self.stdout.write(config.config_dump(config.config_export()), ending="")
        elif action == "apply":
            self._apply(options["file"], dry_run=options["dry_run"])
        elif action == "settle-stopped":
            count = lifecycle.deployments_settle_stopped(worker=options["worker"])
            if count:
                self.stdout.write(f"settled {count} deployment(s) that a stop cut off")

    def _apply(self, path: str, *, dry_run: bool) -> None:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        try:
            data = config.config_load(text)
            plan = config.config_apply(data, dry_run=True)
            for line in plan:
                self.stdout.write(line)
            if not dry_run and any(line[0] in "+~!" for line in plan):
                config.config_apply(data)
                self.stdout.write("applied")
        except config.ConfigError as exc:
            raise CommandError(f"{path}: {exc}") from None
