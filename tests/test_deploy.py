"""Deployment files agree with the code: docker-compose.yml, Dockerfile, .env.example, the systemd unit.

Docker is not installed where these tests run, and there is no network to pull images, so nothing here
builds the image or starts the compose project. The files are parsed and checked against the code instead:
the services and what they run, and above all the MONITOR_* names, which must be the ones the Settings
class reads (derived from ``Settings.model_fields`` and its ``env_prefix``, never listed here). The
containers' health check command is run for real, on a SQLite database.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from ruamel.yaml import YAML

from monitor.config import Settings
from monitor.storage import make_engine, upgrade

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
UNIT = ROOT / "docs" / "deploy" / "monitor.service"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

PREFIX = str(Settings.model_config.get("env_prefix", ""))
MONITOR_NAME = re.compile(r"\b" + re.escape(PREFIX) + r"[A-Z0-9_]*[A-Z0-9]\b")


def setting_names() -> dict[str, str]:
    """The environment variable each Settings field is read from, by field name."""
    names = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        names[field] = (alias or PREFIX + field).upper()
    return names


def secret_names() -> set[str]:
    return {
        setting_names()[field]
        for field, info in Settings.model_fields.items()
        if "SecretStr" in str(info.annotation) or info.annotation is SecretStr
    }


def compose() -> dict[str, Any]:
    data = YAML(typ="safe").load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    return services[name]


def env_file_entries(path: Path) -> list[tuple[str, str]]:
    """KEY=value lines of an environment file as compose and systemd read it (comments on their own lines)."""
    entries = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}:{number}: not KEY=value"
        entries.append((key, value))
    return entries


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def unit_directives() -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"monitor.service: not Key=value: {line!r}"
        directives.setdefault(key.strip(), []).append(value.strip())
    return directives


def monitor_command() -> str:
    """The shell command the monitor service runs (its entrypoint and command put together)."""
    svc = service("monitor")
    parts = []
    for key in ("entrypoint", "command"):
        value = svc.get(key)
        parts.extend(value if isinstance(value, list) else shlex.split(value) if value else [])
    return " ".join(parts)


# -- docker-compose.yml ----------------------------------------------------------------------------------


def test_compose_has_postgres_monitor_and_a_mail_catcher():
    assert set(compose()["services"]) == {"postgres", "monitor", "mail"}
    assert service("postgres")["image"].startswith("postgres:")
    assert service("mail")["image"].startswith("axllent/mailpit")
    assert any(str(port).endswith(":8025") for port in service("mail")["ports"]), "the web UI is published"


def test_postgres_keeps_its_data_in_a_named_volume_and_is_checked_with_pg_isready():
    postgres = service("postgres")
    volume = next(v for v in postgres["volumes"] if v.endswith(":/var/lib/postgresql/data"))
    assert volume.split(":")[0] in compose()["volumes"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?"), (
        "compose refuses to start without a password rather than using an empty one"
    )


def test_monitor_upgrades_the_schema_then_runs_the_daemon():
    command = monitor_command()
    assert re.search(r"monitor db upgrade && exec monitor( -v+)? run( --http \S+)?$", command), command
    svc = service("monitor")
    assert svc["restart"] in {"unless-stopped", "on-failure", "always"}
    assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert svc["healthcheck"]["test"][0] == "CMD"
    assert svc["env_file"] in (".env", [".env"])


def test_monitor_reads_the_mounted_feeds_yaml_and_the_compose_database():
    svc = service("monitor")
    env = environment(svc)
    config = env[setting_names()["config"]]
    assert f"./feeds.yaml:{config}:ro" in svc["volumes"]
    database = env[setting_names()["database_url"]]
    assert database.startswith("postgresql://monitor:${POSTGRES_PASSWORD}@postgres:5432/")
    assert service("postgres")["environment"]["POSTGRES_DB"] == database.rsplit("/", 1)[1]


def test_the_example_mail_settings_reach_the_mail_catcher():
    env = dict(env_file_entries(ENV_EXAMPLE))
    names = setting_names()
    assert env[names["smtp_host"]] in compose()["services"]
    assert env[names["smtp_port"]] == "1025"  # mailpit's SMTP port
    assert env[names["smtp_security"]] == "none"
    assert env[names["smtp_sender"]], "digests are sent only when a sender is set"


# -- the settings: the same names everywhere -------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [COMPOSE, ENV_EXAMPLE, UNIT, DOCKERFILE, DEPLOY_DOC], ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_every_monitor_variable_named_is_a_setting(path: Path):
    used = set(MONITOR_NAME.findall(path.read_text(encoding="utf-8")))
    assert used, f"{path.name} names no {PREFIX}* variable"
    unknown = used - set(setting_names().values())
    assert not unknown, f"{path.name} names variables the Settings class does not read: {sorted(unknown)}"


def test_env_example_lists_every_setting_once_and_no_secret():
    keys = [key for key, _ in env_file_entries(ENV_EXAMPLE)]
    assert len(keys) == len(set(keys)), "a key is listed twice"
    missing = set(setting_names().values()) - set(keys)
    assert not missing, f".env.example lacks {sorted(missing)}"
    entries = dict(env_file_entries(ENV_EXAMPLE))
    for secret in [*secret_names(), "POSTGRES_PASSWORD"]:
        assert entries[secret] == "", f"{secret} must be empty in the example"


def test_env_example_values_are_plain_and_load_into_settings(monkeypatch):
    """Each value is read the same by compose and by systemd (no quotes, no trailing comment), and valid."""
    entries = env_file_entries(ENV_EXAMPLE)
    for key, value in entries:
        assert not value.startswith(("'", '"')) and " #" not in value and value == value.strip(), key
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    for key, value in entries:
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.smtp_enabled


# -- Dockerfile ------------------------------------------------------------------------------------------


def test_dockerfile_builds_a_wheel_and_runs_it_slim_and_unprivileged():
    instructions = dockerfile_instructions()
    stages = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(stages) >= 2 and all("-slim" in stage for stage in stages), stages
    assert any(keyword == "RUN" and "pip wheel" in args for keyword, args in instructions)
    final = final_stage()
    assert any(keyword == "COPY" and args.startswith("--from=") for keyword, args in final)
    assert not any(
        keyword == "RUN" and re.search(r"apt-get|gcc|build-essential", args) for keyword, args in final
    )
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_runs_the_monitor_entry_point_with_its_config_and_data_volume():
    final = dict(final_stage())
    assert json.loads(final["ENTRYPOINT"]) == ["monitor"]
    assert "run" in json.loads(final["CMD"])
    env = dict(re.findall(r"(\w+)=(\S+)", final["ENV"]))
    assert env[setting_names()["config"]] == "/etc/monitor/feeds.yaml"
    database = env[setting_names()["database_url"]]
    volume = json.loads(final["VOLUME"])[0]
    assert database.startswith(f"sqlite:///{volume}/"), "the default database is in the volume"


def test_dockerignore_lets_in_what_the_dockerfile_copies():
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    assert "*" in lines, "everything is left out but what is let in"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY" and not args.startswith("--from="):
            for source in args.split()[:-1]:
                assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"


# -- the health check ------------------------------------------------------------------------------------


def health_check() -> list[str]:
    test = service("monitor")["healthcheck"]["test"]
    instruction = dict(final_stage())["HEALTHCHECK"]
    in_dockerfile = json.loads(instruction[instruction.index("CMD [") + len("CMD ") :])
    assert test[1:] == in_dockerfile, "docker-compose.yml and the Dockerfile check health alike"
    return [str(part) for part in test[1:]]


def run_health_check(database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = health_check()
    assert command[0] == "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env[setting_names()["database_url"]] = database_url
    return subprocess.run(
        [sys.executable, *command[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_health_check_passes_on_a_database_at_the_newest_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    upgrade(make_engine(url))
    result = run_health_check(url, tmp_path)
    assert result.returncode == 0, result.stderr


def test_health_check_fails_on_a_database_not_upgraded(tmp_path):
    result = run_health_check(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path)
    assert result.returncode != 0
    assert "monitor db upgrade" in result.stderr


# -- the systemd unit ------------------------------------------------------------------------------------


def test_systemd_unit_upgrades_then_runs_as_its_own_user():
    unit = unit_directives()
    assert unit["User"] == ["monitor"]
    assert unit["EnvironmentFile"] == ["/etc/monitor/env"]
    assert re.fullmatch(r"\S+/bin/monitor db upgrade", unit["ExecStartPre"][0])
    assert re.fullmatch(r"\S+/bin/monitor( -v+)? run", unit["ExecStart"][0])
    assert unit["Restart"] == ["on-failure"]


def test_systemd_unit_is_hardened_and_may_write_its_database():
    unit = unit_directives()
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"}.items():
        assert unit[key] == [value], key
    writable = unit["ReadWritePaths"][0].split()
    defaults = dict(value.partition("=")[::2] for value in unit["Environment"])
    database = defaults[setting_names()["database_url"]]
    assert any(database.startswith(f"sqlite:///{path}/") for path in writable), (database, writable)
