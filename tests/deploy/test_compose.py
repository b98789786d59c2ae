"""docker-compose.yml: the services, what Prometheus and Grafana mount, every worker scraped,
and a worker environment the contract names and the worker's settings accept."""

from __future__ import annotations

from urllib.parse import urlsplit

from app.settings import Settings
from tests.deploy.conftest import LoadSettings
from tests.deploy.files import (
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
    load_yaml,
    service,
)


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


def test_the_worker_is_given_only_variables_of_the_contract() -> None:
    contract = contract_variables()
    assert {"KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SASL_PASSWORD", "ENRICHER_WEB_PORT"} <= set(contract)  # parsed
    for name in environment(WORKER):
        assert name in contract, f"{name} is not a variable of docs/CONTRACT.md"
        assert not contract[name].startswith("not built"), f"{name} is not built yet"


def test_the_worker_accepts_its_environment(settings_from: LoadSettings) -> None:
    settings = settings_from(environment(WORKER))
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
