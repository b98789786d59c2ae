"""docker-compose.yml: the services, what Prometheus and Grafana mount, every worker scraped,
and a worker environment the contract names and the worker's settings accept."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.settings import Settings, studio_token_line
from tests.helpers.deploy_files import (
    ALERTS,
    DASHBOARD,
    DASHBOARD_PROVIDERS,
    DATASOURCES,
    DEPLOY,
    PROMETHEUS_CONFIG,
    WORKER,
    compose,
    contract_variables,
    environment,
    host_path,
    interpolated,
    interpolations,
    load_yaml,
    service,
)
from tests.helpers.envs import LoadSettings

CHAT = "chat"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|TOKEN")


def _worker_web_port() -> int:
    configured = environment(WORKER).get("ENRICHER_WEB_PORT")
    return int(configured) if configured else int(Settings.model_fields["web_port"].default)


def _flag(service_name: str, flag: str) -> str:
    values = [arg.split("=", 1)[1] for arg in service(service_name)["command"] if arg.startswith(f"{flag}=")]
    assert len(values) == 1, f"{service_name} should be given {flag} once"
    return values[0]


def test_the_stack_has_broker_topics_redis_workers_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert {"kafka", "topics", "redis", WORKER, "prometheus", "grafana"} <= set(services)
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services[WORKER]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_every_image_is_pinned_to_a_version() -> None:
    for name, spec in compose()["services"].items():
        if "image" not in spec:
            assert "build" in spec, f"{name} has neither image nor build"
            continue
        repository, _, tag = spec["image"].rpartition(":")
        assert repository, f"{name}: {spec['image']} has no tag"
        assert "/" not in tag, f"{name}: {spec['image']} has no tag"
        assert tag != "latest", f"{name}: {spec['image']} is not pinned"
        assert any(c.isdigit() for c in tag), f"{name}: {spec['image']} is not pinned to a version"


def test_two_workers_run_from_one_service() -> None:
    worker = service(WORKER)
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker, "a fixed container name allows one replica only"
    assert "ports" not in worker, "a published host port allows one replica only"
    assert str(_worker_web_port()) in [str(port) for port in worker["expose"]]


def test_prometheus_mounts_its_config_and_the_alert_rules() -> None:
    config_path = _flag("prometheus", "--config.file")
    assert host_path("prometheus", config_path) == PROMETHEUS_CONFIG
    rule_files = load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    mounted = [host_path("prometheus", path) for path in rule_files]
    assert ALERTS in mounted
    assert all(path.is_file() for path in mounted)


def test_each_worker_is_scraped_on_its_own_at_the_web_port() -> None:
    """DNS service discovery on the service name yields one target per container; a static
    target `worker:6066` would reach a different replica at each scrape."""
    jobs = load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]
    discovered = [(job, sd) for job in jobs for sd in job.get("dns_sd_configs", []) if WORKER in sd["names"]]
    assert len(discovered) == 1, "one scrape job should find the workers by DNS"
    job, sd = discovered[0]
    assert (sd["type"], sd["port"]) == ("A", _worker_web_port())
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["job_name"] == "stream-enricher"  # what the alerts and the dashboard select
    static_hosts = [
        target.rsplit(":", 1)[0]
        for job in jobs
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert WORKER not in static_hosts


@pytest.mark.parametrize("service_name", [WORKER, CHAT])
def test_the_worker_and_chat_are_given_only_variables_of_the_contract(service_name: str) -> None:
    contract = contract_variables()
    assert {"KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SASL_PASSWORD", "ENRICHER_WEB_PORT"} <= set(contract)  # parsed
    for name in environment(service_name):
        assert name in contract, f"{name} is not a variable of docs/CONTRACT.md"
        assert not contract[name].startswith("not built"), f"{name} is not built yet"


@pytest.mark.parametrize("service_name", [WORKER, CHAT])
def test_the_worker_and_chat_accept_their_environment(
    settings_from: LoadSettings, service_name: str, tmp_path: Path
) -> None:
    env = environment(service_name, {"ENRICHER_CHAT_JWT_SECRET": "a secret of 32 characters or more"})
    if "ENRICHER_STUDIO_TOKENS_FILE" in env:  # a container path: the host file mounted there
        container_path = env["ENRICHER_STUDIO_TOKENS_FILE"]
        assert any(
            str(volume).split(":")[-2] == container_path for volume in service(service_name)["volumes"]
        )
        tokens = tmp_path / "studio-tokens"
        tokens.write_text(studio_token_line("ops", "a staff token"))
        env["ENRICHER_STUDIO_TOKENS_FILE"] = str(tokens)
    settings = settings_from(env)
    services = compose()["services"]
    for address in settings.kafka_bootstrap_servers.split(","):
        assert address.rsplit(":", 1)[0] in services, f"{address} is not a service of the stack"
    assert urlsplit(settings.redis_url.get_secret_value()).hostname in services


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard() -> None:
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    assert provisioning == DEPLOY / "grafana" / "provisioning"
    assert sorted(provisioning.glob("datasources/*.yml")) == sorted(DATASOURCES.glob("*.yml"))
    providers = [p for f in DASHBOARD_PROVIDERS.glob("*.yml") for p in load_yaml(f)["providers"]]
    assert [p["type"] for p in providers] == ["file"]
    assert DASHBOARD in host_path("grafana", providers[0]["options"]["path"]).glob("*.json")
    home = service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path("grafana", home) == DASHBOARD


def test_the_datasource_is_the_compose_prometheus() -> None:
    sources = [s for f in DATASOURCES.glob("*.yml") for s in load_yaml(f)["datasources"]]
    assert [s["type"] for s in sources] == ["prometheus"]
    url = urlsplit(sources[0]["url"])
    assert url.hostname == "prometheus"
    assert url.hostname in compose()["services"]
    assert url.port == 9090  # Prometheus's default listen address, which the service keeps
    assert not any(arg.startswith("--web.listen-address") for arg in service("prometheus")["command"])


def test_no_secret_has_a_default_so_compose_refuses_to_start_without_it() -> None:
    secrets = [(name, operator) for name, operator in interpolations() if SECRET_NAME.search(name)]
    assert {"REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "OPENAI_API_KEY"} <= {name for name, _ in secrets}
    for name, operator in secrets:
        assert operator == ":?", f"${{{name}}} must be required (`${{{name}:?...}}`), not given a default"
    grafana = service("grafana")["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_redis_asks_for_the_password_the_worker_and_chat_give() -> None:
    shell = {"REDIS_PASSWORD": "s3cret"}
    command = [interpolated(arg, shell) for arg in service("redis")["command"]]
    assert command[command.index("--requirepass") + 1] == "s3cret"
    assert environment("redis", shell)["REDISCLI_AUTH"] == "s3cret"  # the health check's redis-cli
    for name in (WORKER, CHAT):
        url = urlsplit(environment(name, shell)["REDIS_URL"])
        assert (url.hostname, url.password) == ("redis", "s3cret"), name


def test_published_ports_listen_on_localhost_unless_told_otherwise() -> None:
    published = {
        name: [str(port) for port in spec.get("ports", [])] for name, spec in compose()["services"].items()
    }
    assert {name for name, ports in published.items() if ports} == {"prometheus", "grafana", CHAT}
    binds = {"prometheus": "PROMETHEUS_BIND", "grafana": "GRAFANA_BIND", CHAT: "CHAT_BIND"}
    for name, variable in binds.items():
        for port in published[name]:
            assert interpolated(port).split(":")[0] == "127.0.0.1", f"{name} publishes {port}"
            assert interpolated(port, {variable: "0.0.0.0"}).split(":")[0] == "0.0.0.0", variable


def test_the_chat_container_is_given_its_doors() -> None:
    chat = service(CHAT)["environment"]
    assert chat["ENRICHER_CHAT_JWT_SECRET"].startswith("${ENRICHER_CHAT_JWT_SECRET:?")
    assert dict(interpolations())["STUDIO_TOKENS_FILE"] == ":?"
    assert "ENRICHER_CHAT_DEV_LOGIN" not in chat  # no demo login, no customer list


def test_the_chat_container_checks_its_own_health_page() -> None:
    chat = service(CHAT)
    port = environment(CHAT)["ENRICHER_CHAT_PORT"]
    assert chat["command"][:2] == ["enricher", "chat"]
    assert [str(p).rsplit(":", 1)[1] for p in chat["ports"]] == [port]
    check = " ".join(chat["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in check
