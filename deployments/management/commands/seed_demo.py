"""Demo data for the one-machine setup. Safe to run again: it reuses what exists."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from django.db import transaction

from deployments import permissions
from deployments.demo_app import create_demo_repo, create_hello_repo
from deployments.models import Environment, Placement, Repository

USERS = {
    "admin": permissions.ADMINS,
    "release": permissions.RELEASE_MANAGERS,
    "dev": permissions.DEVELOPERS,
}
ENVIRONMENTS = [
    # name, order, requires approval
    ("dev", 10, False),
    ("stage", 20, False),
    ("live", 30, True),
]


class Command(BaseCommand):
    help = "Create demo users, two demo applications (demo, hello) and the dev, stage and live environments."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--port-base", type=int, default=8080, help="demo: dev BASE+1, stage +2, live +3; hello: +11, +12"
        )

    def handle(self, *args: Any, port_base: int, **options: Any) -> None:
        passwords = self._passwords()
        repo_path = Path(settings.STATE_DIR) / "demo-repo"
        if not (repo_path / ".git").exists():
            create_demo_repo(repo_path)
        hello_path = Path(settings.STATE_DIR) / "hello-repo"
        if not (hello_path / ".git").exists():
            create_hello_repo(hello_path)
        with transaction.atomic():
            self._users(passwords)
            groups = {name: Group.objects.get(name=name) for name in USERS.values()}
            apps = {}
            for name, path in (("demo", repo_path), ("hello", hello_path)):
                apps[name], _ = Repository.objects.get_or_create(
                    name=name,
                    defaults={
                        "git_url": str(path),
                        "default_branch": "main",
                        "test_command": "sh /app/test.sh",
                        "image_name": f"shipmate/{name}",
                    },
                )
            for name, order, approval in ENVIRONMENTS:
                env, created = Environment.objects.get_or_create(
                    name=name,
                    defaults={
                        "order": order,
                        "target_kind": "docker",
                        # Shared by the applications placed here; each placement has its port.
                        "target_settings": {
                            "docker_host": "",  # empty: the engine Shipmate itself uses (DOCKER_HOST)
                            "network_mode": "host",
                            "bind_host": "127.0.0.1",
                            "health_path": "/healthz",
                            "health_timeout": 30,
                        },
                        "requires_approval": approval,
                        "approvals_required": 1,
                    },
                )
                if created:
                    env.deploy_groups.set(groups.values())
                    env.approve_groups.set([groups[permissions.RELEASE_MANAGERS], groups[permissions.ADMINS]])
                    env.variables.create(name="GREETING", plain_value=f"Hello from {name}")
                # demo everywhere on BASE+1..3; hello in dev and stage on BASE+11..12.
                for app, offset in (("demo", 0), ("hello", 10)):
                    if app == "hello" and name == "live":
                        continue
                    port = port_base + offset + order // 10
                    url = f"http://127.0.0.1:{port}/"
                    Placement.objects.get_or_create(
                        repository=apps[app],
                        environment=env,
                        defaults={"target_settings": {"port": port}, "smoke_url": url, "public_url": url},
                    )
        self.stdout.write(f"Demo repository: {repo_path}")
        for name in USERS:
            self.stdout.write(f"  login {name:8} password {passwords[name]}")

    def _passwords(self) -> dict[str, str]:
        # Random per install, kept beside the database so every run prints the same.
        path = Path(settings.STATE_DIR) / "demo-passwords.txt"
        known: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                user, _, password = line.partition(" ")
                known[user] = password
        for name in USERS:
            known.setdefault(name, f"{name}-{secrets.token_urlsafe(6)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{u} {p}\n" for u, p in known.items()))
        path.chmod(0o600)
        return known

    def _users(self, passwords: dict[str, str]) -> None:
        for name, group in USERS.items():
            user, created = User.objects.get_or_create(username=name)
            if created or not user.check_password(passwords[name]):
                user.set_password(passwords[name])
            user.is_staff = user.is_superuser = name == "admin"
            user.save()
            user.groups.add(Group.objects.get(name=group))
