//! A real Prometheus (Debian's `prometheus`) scrapes the admin ports of kms-proxy (with JWT
//! authentication against the test OpenID provider) and kms-core, and loads the alert rules of
//! `deploy/components/monitoring`. Through its HTTP API: both targets are up, the request and
//! operation counters rise with traffic, the rules evaluate without error, and every query of
//! the Grafana dashboard is valid PromQL over metrics the two processes export.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kms_tests::idp::Idp;
use kms_tests::proxy::capture_output;
use kms_tests::stack::{Stack, create_request};
use kms_tests::{ProxyCommand, Validity, random_u64, tls_args};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A Prometheus server with its own storage in a temporary directory; killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Prometheus cannot report a port it picked, so try random high ports until one binds.
    fn start(config: &str, rules: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("prometheus.yml"), config)?;
        std::fs::write(dir.path().join("rules.json"), rules)?;
        for _ in 0..20 {
            let port = 20_000 + random_u64() % 40_000;
            let mut child = Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context(
                    "prometheus not found: apt-get install prometheus (bash tests/run.sh does)",
                )?;
            let logs = capture_output(&mut child);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let text = logs.lock().map(|l| l.join("\n")).unwrap_or_default();
                if text.contains("Server is ready to receive web requests") {
                    return Ok(Self {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                        _dir: dir,
                    });
                }
                if child.try_wait()?.is_some() {
                    if text.contains("address already in use") {
                        break;
                    }
                    bail!("prometheus exited:\n{text}");
                }
                if Instant::now() > deadline {
                    bail!("prometheus did not become ready in 30 s:\n{text}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        bail!("no free port for prometheus after 20 tries")
    }

    async fn api(&self, path: &str) -> Result<Value> {
        let body: Value = reqwest::get(format!("{}{path}", self.url))
            .await?
            .json()
            .await?;
        Ok(body)
    }

    /// An instant query: (status, result vector).
    async fn query(&self, promql: &str) -> Result<(String, Vec<Value>)> {
        let body = self
            .api(&format!("/api/v1/query?query={}", encode(promql)))
            .await?;
        let status = body["status"].as_str().unwrap_or("?").to_owned();
        let result = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if status != "success" {
            return Ok((format!("{status}: {}", body["error"]), result));
        }
        Ok((status, result))
    }

    /// The first sample of a query as a number (None when the result is empty).
    async fn value(&self, promql: &str) -> Result<Option<f64>> {
        let (_, result) = self.query(promql).await?;
        Ok(result
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok()))
    }

    /// Polls until `promql`'s first value satisfies `ok`, for at most 30 s.
    async fn wait_for(&self, promql: &str, ok: impl Fn(f64) -> bool) -> Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(promql).await?;
            if last.is_some_and(&ok) {
                return Ok(last.unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("{promql}: last value {last:?}")
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `spec` of the PrometheusRule in the monitoring component: a plain rules file.
fn alert_rules() -> Result<String> {
    let file = repo().join("deploy/components/monitoring/prometheusrule.yaml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))['spec']))",
        ])
        .arg(file)
        .output()
        .context("python3 with PyYAML is needed (pip install kubernetes-validate brings it)")?;
    anyhow::ensure!(out.status.success(), "cannot read the PrometheusRule");
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_both_processes_and_the_dashboard_queries_work() -> Result<()> {
    let stack = Stack::start(None).await?;
    let idp = Idp::start()?;
    let cert = stack.pki.server("monitored", Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &format!("unix:{}", stack.socket.display())))
        .args([
            "--jwt-issuer-uri",
            &idp.issuer,
            "--jwks-uri",
            &idp.jwks_uri(),
        ])
        .spawn()?;
    assert!(proxy.wait_ready().await, "{}", proxy.logs());
    let target = |url: String| url.trim_start_matches("http://").to_owned();
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["rules.json"]
scrape_configs:
  - job_name: kms-proxy
    static_configs: [{{targets: ["{proxy}"]}}]
  - job_name: kms-core
    static_configs: [{{targets: ["{core}"]}}]
"#,
        proxy = target(proxy.admin_url("")),
        core = target(stack.core.admin_url("")),
    );
    let prometheus = Prometheus::start(&config, &alert_rules()?)?;

    prometheus
        .wait_for(r#"up{job="kms-proxy"}"#, |v| v == 1.0)
        .await?;
    prometheus
        .wait_for(r#"up{job="kms-core"}"#, |v| v == 1.0)
        .await?;
    let requests = r#"sum(kms_proxy_requests_total{job="kms-proxy"}) or vector(0)"#;
    let operations = r#"sum(kms_core_operations_total{job="kms-core"}) or vector(0)"#;
    let requests_before = prometheus.wait_for(requests, |_| true).await?;
    let operations_before = prometheus.wait_for(operations, |_| true).await?;

    // Traffic: key creations with a token of the provider, and refused requests.
    let client = kms_tests::client::https(&stack.pki.ca_pem)?;
    let token = idp.machine_token().await?;
    for _ in 0..5 {
        let r = client
            .post(proxy.url("/kmip/2_1"))
            .bearer_auth(&token)
            .json(&create_request(256, &["monitored"], None))
            .send()
            .await?;
        assert_eq!(r.status(), 200);
    }
    for _ in 0..3 {
        let r = client
            .get(proxy.url("/version"))
            .bearer_auth("not.a.token")
            .send()
            .await?;
        assert_eq!(r.status(), 401);
    }
    prometheus
        .wait_for(requests, |v| v >= requests_before + 8.0)
        .await?;
    prometheus
        .wait_for(operations, |v| v >= operations_before + 5.0)
        .await?;
    prometheus
        .wait_for(
            r#"sum(kms_proxy_auth_decisions_total{outcome="failure",reason="malformed token"})"#,
            |v| v >= 3.0,
        )
        .await?;

    // The alert rules load and evaluate without error.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules = prometheus.api("/api/v1/rules").await?;
        let all: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = all.len() >= 4
            && all.iter().all(|r| {
                r["health"] == "ok"
                    && r["lastEvaluation"]
                        .as_str()
                        .is_some_and(|t| !t.starts_with("0001"))
            });
        if evaluated {
            break;
        }
        let bad: Vec<String> = all
            .iter()
            .filter(|r| r["health"] == "err")
            .map(|r| format!("{}: {}", r["name"], r["lastError"]))
            .collect();
        assert!(bad.is_empty(), "rules in error: {bad:?}");
        assert!(Instant::now() < deadline, "rules never evaluated: {rules}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every dashboard query is valid PromQL and names only exported metrics.
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(
        repo().join("deploy/grafana/kms-dashboard.json"),
    )?)?;
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    let exported = format!(
        "{}\n{}",
        kms_tests::scrape(&proxy).await?,
        reqwest::get(stack.core.admin_url("/metrics"))
            .await?
            .text()
            .await?
    );
    let templating = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["query"].as_str())
        .filter(|q| q.contains("kms_"))
        .map(str::to_owned);
    let mut names: Vec<String> = Vec::new();
    for expr in exprs.iter().cloned().chain(templating) {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("kms_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    for name in &names {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            exported.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {name}, which neither process exports"
        );
    }
    // rate() needs two samples of a series: let a few more scrapes (1 s apart) come in.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut empty = Vec::new();
    for expr in exprs.iter_mut() {
        let promql = expr
            .replace("$__rate_interval", "1m")
            .replace("$namespace", ".*");
        let (status, result) = prometheus.query(&promql).await?;
        assert_eq!(status, "success", "{promql}");
        if result.is_empty() {
            empty.push(promql);
        }
    }
    // With traffic, the request, auth, JWKS and operation panels all have data.
    for must in [
        "kms_proxy_requests_total",
        "kms_proxy_auth_decisions_total",
        "kms_proxy_jwks_fetches_total",
        "kms_core_operations_total",
        "kms_proxy_server_certificate_not_after_timestamp_seconds",
    ] {
        assert!(
            !empty
                .iter()
                .any(|e| e.contains(must) && !e.contains("histogram_quantile")),
            "no data for {must}: {empty:?}"
        );
    }
    Ok(())
}
