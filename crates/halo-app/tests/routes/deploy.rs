//! The deploy files (`Dockerfile`, `deploy/cloudrun`, `deploy/kubernetes`) agree with the code:
//! every variable they set is one `halo-config` reads (`halo_config::variables()`), the secrets
//! come only from secret references, every probe path is a route of the service the container
//! runs (the route list is the OpenAPI document collected from the same registration calls the
//! services make, built in-process), containers listen on 0.0.0.0, the services skip
//! start-up migrations and the jobs run exactly `migrate`. No stores needed.

use halo_app::Service;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use utoipa_actix_web::AppExt;
use yaml_rust2::{Yaml, YamlLoader};

/// Never a literal value in a deploy file.
const SECRETS: [&str; 3] = ["DATABASE_URL", "VALKEY_URL", "AUTH_JWT_SECRET"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Doc {
    file: String,
    yaml: Yaml,
}

impl Doc {
    fn kind(&self) -> &str {
        self.yaml["kind"].as_str().unwrap_or_default()
    }

    fn api_version(&self) -> &str {
        self.yaml["apiVersion"].as_str().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.yaml["metadata"]["name"].as_str().unwrap_or_default()
    }

    fn is_cloud_run(&self) -> bool {
        self.api_version() == "serving.knative.dev/v1"
            || self.api_version() == "run.googleapis.com/v1"
    }
}

fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, found);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            found.push(path);
        }
    }
}

/// Every document of every YAML file under deploy/ (each must parse).
fn documents() -> Vec<Doc> {
    let mut files = Vec::new();
    yaml_files(&repo().join("deploy"), &mut files);
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.strip_prefix(repo()).unwrap().display().to_string();
        let loaded = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!loaded.is_empty(), "{file}: no document");
        for yaml in loaded {
            assert!(yaml.as_hash().is_some(), "{file}: not a mapping");
            docs.push(Doc {
                file: file.clone(),
                yaml,
            });
        }
    }
    docs
}

/// The paths a service serves, from the document `utoipa-actix-web` collects while the very
/// `configure_*` the binaries use registers them.
fn routes(service: Service) -> BTreeSet<String> {
    let configure = match service {
        Service::Public => halo_http::configure_public,
        Service::Internal => halo_http::configure_internal,
    };
    let (_app, api) = actix_web::App::new()
        .into_utoipa_app()
        .configure(configure)
        .split_for_parts();
    api.paths.paths.keys().cloned().collect()
}

fn service_of(binary: &str) -> Service {
    match binary.rsplit('/').next() {
        Some("public-api") => Service::Public,
        Some("internal-api") => Service::Internal,
        other => panic!("a container runs {other:?}, not one of the two binaries"),
    }
}

/// Every container of a document (`containers` lists anywhere in it).
fn containers(yaml: &Yaml, found: &mut Vec<Yaml>) {
    match yaml {
        Yaml::Hash(map) => {
            for (key, value) in map {
                if matches!(key.as_str(), Some("containers" | "initContainers")) {
                    found.extend(value.as_vec().unwrap().iter().cloned());
                } else {
                    containers(value, found);
                }
            }
        }
        Yaml::Array(items) => items.iter().for_each(|item| containers(item, found)),
        _ => {}
    }
}

/// What a container's environment holds: a literal, or a secret reference.
#[derive(Debug, PartialEq)]
enum Setting {
    Value(String),
    Secret,
}

/// A container's variables: its ConfigMaps (`envFrom`), then its own `env` (which wins).
fn environment(
    file: &str,
    container: &Yaml,
    config_maps: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, Setting> {
    let mut env = BTreeMap::new();
    for source in container["envFrom"].as_vec().into_iter().flatten() {
        let name = source["configMapRef"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: envFrom other than a configMapRef"));
        let data = config_maps
            .get(name)
            .unwrap_or_else(|| panic!("{file}: no ConfigMap {name} in deploy/"));
        for (key, value) in data {
            env.insert(key.clone(), Setting::Value(value.clone()));
        }
    }
    for var in container["env"].as_vec().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_owned();
        let setting = match (&var["value"], &var["valueFrom"]["secretKeyRef"]) {
            (Yaml::String(value), Yaml::BadValue) => Setting::Value(value.clone()),
            (Yaml::BadValue, reference) if reference["name"].as_str().is_some() => Setting::Secret,
            (value, _) => panic!("{file}: {name} is {value:?}: set a quoted string or a secret"),
        };
        env.insert(name, setting);
    }
    env
}

/// `ENV` of the Dockerfile's last stage (the runtime image), as key → value.
fn dockerfile() -> (BTreeMap<String, String>, String) {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let runtime = joined.rsplit("\nFROM ").next().unwrap();
    let mut env = BTreeMap::new();
    for line in runtime.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (key, value) = pair.split_once('=').expect("ENV KEY=value");
                env.insert(key.to_owned(), value.trim_matches('"').to_owned());
            }
        }
    }
    let healthcheck = runtime
        .lines()
        .find(|l| l.trim_start().starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK")
        .to_owned();
    (env, healthcheck)
}

fn probe_path(file: &str, container: &Yaml, probe: &str) -> Option<String> {
    let node = &container[probe];
    if node.is_badvalue() {
        return None;
    }
    let path = node["httpGet"]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("{file}: {probe} is not an HTTP GET"));
    let port = &node["httpGet"]["port"];
    let ports = container["ports"].as_vec().unwrap();
    let known = ports
        .iter()
        .any(|p| p["containerPort"] == *port || (p["name"] == *port && port.as_str().is_some()));
    assert!(
        known,
        "{file}: {probe} port {port:?} is not a container port"
    );
    Some(path.to_owned())
}

#[test]
fn deploy_files_set_known_variables_and_probe_real_routes() {
    let known: BTreeSet<&str> = halo_config::variables().collect();
    let docs = documents();
    let (image_env, healthcheck) = dockerfile();
    for key in image_env.keys() {
        assert!(
            known.contains(key.as_str()),
            "Dockerfile sets unknown {key}"
        );
    }
    assert_eq!(
        image_env.get("BIND_ADDR").map(String::as_str),
        Some("0.0.0.0")
    );
    assert!(healthcheck.contains("\"healthcheck\""), "{healthcheck}");

    let mut config_maps = BTreeMap::new();
    for doc in docs.iter().filter(|d| d.kind() == "ConfigMap") {
        let data: BTreeMap<String, String> = doc.yaml["data"]
            .as_hash()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let value = v
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: {k:?} not a string", doc.file));
                (k.as_str().unwrap().to_owned(), value.to_owned())
            })
            .collect();
        config_maps.insert(doc.name().to_owned(), data);
    }
    let served = [Service::Public, Service::Internal].map(|s| (s, routes(s)));

    let mut seen = BTreeMap::<(String, String), usize>::new();
    for doc in &docs {
        let mut found = Vec::new();
        containers(&doc.yaml, &mut found);
        for container in found {
            let file = doc.file.as_str();
            let command: Vec<&str> = container["command"]
                .as_vec()
                .unwrap_or_else(|| panic!("{file}: a container without a command"))
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            let service = service_of(command[0]);
            let args: Vec<&str> = container["args"]
                .as_vec()
                .into_iter()
                .flatten()
                .map(|a| a.as_str().unwrap())
                .collect();
            let env = environment(file, &container, &config_maps);
            for (name, setting) in &env {
                assert!(
                    known.contains(name.as_str()),
                    "{file}: unknown variable {name}"
                );
                if SECRETS.contains(&name.as_str()) {
                    assert_eq!(
                        *setting,
                        Setting::Secret,
                        "{file}: {name} must be a secret reference"
                    );
                }
            }
            for secret in SECRETS {
                assert_eq!(
                    env.get(secret),
                    Some(&Setting::Secret),
                    "{file}: {secret} missing"
                );
            }
            let ports: Vec<i64> = container["ports"]
                .as_vec()
                .into_iter()
                .flatten()
                .map(|p| p["containerPort"].as_i64().unwrap())
                .collect();
            match env.get("PORT") {
                _ if doc.is_cloud_run() => {
                    assert!(
                        !env.contains_key("PORT"),
                        "{file}: Cloud Run sets PORT itself"
                    );
                }
                Some(Setting::Value(port)) => {
                    let port: i64 = port.parse().unwrap();
                    assert!(
                        ports.is_empty() || ports == [port],
                        "{file}: PORT {port} vs {ports:?}"
                    );
                }
                _ => {}
            }

            let role = match doc.kind() {
                "Job" => {
                    assert_eq!(args, ["migrate"], "{file}: the job runs exactly `migrate`");
                    "job"
                }
                "Deployment" | "Service" => {
                    assert!(
                        args.is_empty(),
                        "{file}: a service runs with no arguments: {args:?}"
                    );
                    assert_eq!(
                        env.get("BIND_ADDR"),
                        Some(&Setting::Value("0.0.0.0".into())),
                        "{file}: a service in a container listens on every address"
                    );
                    assert_eq!(
                        env.get("MIGRATE_ON_START"),
                        Some(&Setting::Value("false".into())),
                        "{file}: migrations are the job's"
                    );
                    "service"
                }
                other => panic!("{file}: containers in a {other}"),
            };

            let (_, paths) = served.iter().find(|(s, _)| *s == service).unwrap();
            let mut probes = BTreeMap::new();
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if let Some(path) = probe_path(file, &container, probe) {
                    assert!(
                        paths.contains(&path),
                        "{file}: {probe} {path} is not a route of {}",
                        service.name()
                    );
                    probes.insert(probe, path);
                }
            }
            if role == "service" {
                let readiness = if doc.is_cloud_run() {
                    "startupProbe"
                } else {
                    "readinessProbe"
                };
                assert_eq!(
                    probes.get("livenessProbe").map(String::as_str),
                    Some("/healthz"),
                    "{file}"
                );
                assert_eq!(
                    probes.get(readiness).map(String::as_str),
                    Some("/readyz"),
                    "{file}"
                );
            }
            let platform = if doc.is_cloud_run() {
                "cloudrun"
            } else {
                "kubernetes"
            };
            let key = (platform.to_owned(), format!("{role} {}", service.name()));
            *seen.entry(key).or_default() += 1;
        }
    }
    let expected: BTreeMap<(String, String), usize> = [
        ("cloudrun", "service public-api"),
        ("cloudrun", "service internal-api"),
        ("cloudrun", "job internal-api"),
        ("kubernetes", "service public-api"),
        ("kubernetes", "service internal-api"),
        ("kubernetes", "job internal-api"),
    ]
    .into_iter()
    .map(|(p, r)| ((p.to_owned(), r.to_owned()), 1))
    .collect();
    assert_eq!(seen, expected, "one container of each");
}

#[test]
fn cloud_run_keeps_cpu_and_an_instance_and_hides_the_internal_api() {
    let docs = documents();
    let services: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.api_version() == "serving.knative.dev/v1" && d.kind() == "Service")
        .collect();
    assert_eq!(services.len(), 2);
    for doc in services {
        let annotations = &doc.yaml["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(
            annotations["run.googleapis.com/cpu-throttling"].as_str(),
            Some("false"),
            "{}: the sweeps and timers run between requests",
            doc.file
        );
        let min: u32 = annotations["autoscaling.knative.dev/minScale"]
            .as_str()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        assert!(min >= 1, "{}: minScale {min}", doc.file);
        let ingress = doc.yaml["metadata"]["annotations"]["run.googleapis.com/ingress"].as_str();
        let want = if doc.name().contains("internal") {
            "internal"
        } else {
            "all"
        };
        assert_eq!(ingress, Some(want), "{}", doc.file);
    }
}

#[test]
fn kubernetes_keeps_the_internal_api_inside_and_lists_its_files() {
    let docs = documents();
    for doc in docs
        .iter()
        .filter(|d| d.kind() == "Service" && !d.is_cloud_run())
    {
        let kind = doc.yaml["spec"]["type"].as_str().unwrap_or("ClusterIP");
        assert_eq!(
            kind, "ClusterIP",
            "{}: exposed through an ingress, never directly",
            doc.file
        );
    }
    let budgets: BTreeSet<&str> = docs
        .iter()
        .filter(|d| d.kind() == "PodDisruptionBudget")
        .map(Doc::name)
        .collect();
    for doc in docs.iter().filter(|d| d.kind() == "Deployment") {
        assert!(
            budgets.contains(doc.name()),
            "{}: no PodDisruptionBudget",
            doc.file
        );
        let requests = &doc.yaml["spec"]["template"]["spec"]["containers"][0]["resources"];
        for field in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    requests[field][resource].as_str().is_some(),
                    "{}: {field}.{resource}",
                    doc.file
                );
            }
        }
    }
    for doc in docs.iter().filter(|d| d.kind() == "Kustomization") {
        let dir = repo().join(&doc.file);
        let dir = dir.parent().unwrap();
        for resource in doc.yaml["resources"].as_vec().unwrap() {
            let path = dir.join(resource.as_str().unwrap());
            assert!(
                path.is_file(),
                "{}: {} does not exist",
                doc.file,
                path.display()
            );
        }
    }
}
