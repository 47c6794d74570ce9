//! What an operator installs beside the daemon, checked against the daemon: the
//! Prometheus rules pass promtool and their unit tests, a live node's `/metrics`
//! passes `promtool check metrics`, and every metric (and label value) the rules
//! and the Grafana dashboard name is one a live node exports, so neither can
//! drift from the code.

mod common;

use common::Daemon;
use common::pki::Pki;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RULES: &str = "packaging/prometheus/stickless.rules.yml";
const RULE_TESTS: &str = "packaging/prometheus/stickless.rules.test.yml";
const DASHBOARD: &str = "packaging/grafana/stickless.json";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs promtool (Debian's `prometheus` package; scripts/test installs it), with
/// `input` on its standard input; its status and everything it printed.
fn promtool(args: &[&str], input: &[u8]) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(repo("packaging/prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test installs Debian's prometheus package)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    let (ok, said) = promtool(&["check", "rules", "stickless.rules.yml"], b"");
    assert!(ok && said.contains("SUCCESS"), "{said}");
    let (ok, said) = promtool(&["test", "rules", "stickless.rules.test.yml"], b"");
    assert!(ok && said.contains("SUCCESS"), "{said}");
    // Every alert has a unit test that names it.
    let rules = std::fs::read_to_string(repo(RULES)).unwrap();
    let tests = std::fs::read_to_string(repo(RULE_TESTS)).unwrap();
    let alerts: Vec<&str> = rules.lines().filter_map(|line| line.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 14, "{alerts:?}");
    for alert in alerts {
        assert!(tests.contains(&format!("alertname: {alert}\n")), "no unit test fires {alert}");
    }
}

/// One HTTP GET to the metrics port; the body.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(common::EXCHANGE_DEADLINE)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a complete response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body.to_string()
}

/// Each sample name of an exposition with the label pairs its samples carry.
fn samples(exposition: &str) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut found: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for line in exposition.lines().filter(|line| !line.starts_with('#') && !line.is_empty()) {
        let end = line.find(['{', ' ']).unwrap();
        let labels = found.entry(line[..end].to_string()).or_default();
        if let Some(inner) = line[end..].strip_prefix('{').and_then(|rest| rest.split_once('}')).map(|(inner, _)| inner)
        {
            labels.extend(label_pairs(inner));
        }
    }
    found
}

/// The `name="value"` pairs of a selector or a sample's labels; matchers other
/// than `=` (`=~`, `!=`) are left out, as they name no one value.
fn label_pairs(inner: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = inner;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().trim_start_matches(',').trim();
        let exact = !name.ends_with('!') && !rest[eq + 1..].starts_with('~');
        let quoted = rest[eq..].find('"').map(|at| eq + at + 1).unwrap();
        let close = quoted + rest[quoted..].find('"').unwrap();
        if exact {
            pairs.push((name.to_string(), rest[quoted..close].to_string()));
        }
        rest = &rest[close + 1..];
    }
    pairs
}

/// Every `stickless_*` metric a PromQL text names, with the exact label matchers
/// of its selector.
fn named_metrics(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut named = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("stickless_") {
        // A name of its own, not the middle of another (a recording rule's
        // `instance:stickless_x:rate5m`).
        let before = text[..text.len() - rest.len() + at].bytes().next_back();
        let word_start = before.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b':'));
        let tail = &rest[at..];
        let len =
            tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..len];
        let matchers =
            tail[len..].strip_prefix('{').and_then(|s| s.split_once('}')).map(|(inner, _)| label_pairs(inner));
        if word_start {
            named.push((name.to_string(), matchers.unwrap_or_default()));
        }
        rest = &tail[len..];
    }
    named
}

/// A node that exports every family: TLS on its client port and on its
/// replication link to a peer, the ASP.NET State Server port, and the metrics port.
struct LiveNode {
    node: Daemon,
    _peer: Daemon,
    pki: Pki,
}

impl LiveNode {
    fn start() -> LiveNode {
        let pki = Pki::standard("operating");
        let file = |name: &str| pki.path(name).display().to_string();
        let client_tls = format!("ssl_chain_cert={},ssl_key={}", file("server.pem"), file("server.key"));
        let repl_tls = [
            format!("--repl-tls-cert={}", file("server.pem")),
            format!("--repl-tls-key={}", file("server.key")),
            format!("--repl-tls-ca={}", file("ca.pem")),
        ];
        let mut args = vec!["-Z", "-o", &client_tls, "--repl-listen", "127.0.0.1:0", "--repl-wait-sync", "0"];
        args.extend(["--metrics-listen", "127.0.0.1:0", "--aspnet-listen", "127.0.0.1:0"]);
        args.extend(repl_tls.iter().map(String::as_str));
        let node = Daemon::start(&args);
        let peer_flag = format!("--peer=127.0.0.1:{}", node.repl_addr.unwrap().port());
        let mut peer_args = vec!["--repl-listen", "127.0.0.1:0", &peer_flag];
        peer_args.extend(repl_tls.iter().map(String::as_str));
        let peer = Daemon::start(&peer_args);
        let live = LiveNode { node, _peer: peer, pki };
        // The per-peer families have a sample once the peer has linked and said who it is.
        let deadline = Instant::now() + common::EXCHANGE_DEADLINE;
        while !live.metrics().contains("stickless_replication_link_up{peer=") {
            assert!(Instant::now() < deadline, "the peer never linked: {}", live.node.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        live
    }

    fn metrics(&self) -> String {
        scrape(self.node.metrics_addr.unwrap())
    }
}

#[test]
fn a_live_nodes_metrics_pass_promtool_and_hold_every_metric_the_rules_and_dashboard_name() {
    let live = LiveNode::start();
    let exposition = live.metrics();
    let (ok, said) = promtool(&["check", "metrics"], exposition.as_bytes());
    assert!(ok && said.trim().is_empty(), "promtool check metrics: {said}\n{exposition}");

    // The certificate's notAfter, as openssl reads it, for both what it serves.
    let not_after = openssl_not_after(&live.pki.path("server.pem"));
    for serves in ["clients", "replication"] {
        let line = format!("stickless_tls_certificate_expiry_timestamp_seconds{{serves=\"{serves}\"}} {not_after}\n");
        assert!(exposition.contains(&line), "{line} in {exposition}");
    }
    assert!(exposition.contains("\nstickless_replication_tombstones_shed_total 0\n"), "{exposition}");
    assert!(exposition.contains("\nstickless_replication_minority 0\n"), "{exposition}");

    let exported = samples(&exposition);
    let rules = std::fs::read_to_string(repo(RULES)).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).unwrap()).expect("the dashboard is JSON");
    let mut queries = vec![rules];
    let panels = dashboard["panels"].as_array().expect("the dashboard's panels");
    for panel in panels.iter().filter(|panel| panel["type"] != "row") {
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{} has no queries", panel["title"]));
        assert!(!targets.is_empty(), "{} has no queries", panel["title"]);
        for target in targets {
            queries.push(target["expr"].as_str().expect("a PromQL expression").to_string());
        }
    }
    assert!(panels.len() >= 15, "{} panels", panels.len());
    let mut checked = BTreeSet::new();
    for query in &queries {
        for (name, matchers) in named_metrics(query) {
            let labels = exported.get(&name).unwrap_or_else(|| panic!("{name} is not exported; in:\n{query}"));
            for pair in matchers {
                assert!(labels.contains(&pair), "{name} has no sample with {}=\"{}\"; in:\n{query}", pair.0, pair.1);
            }
            checked.insert(name);
        }
    }
    // The figures an operator looks at first are all on the dashboard or in the rules.
    for name in [
        "stickless_commands_total",
        "stickless_lookups_total",
        "stickless_replication_lag_seconds_bucket",
        "stickless_memory_bytes",
        "stickless_replication_link_up",
        "stickless_aspnet_sessions",
        "stickless_aspnet_locks_total",
        "stickless_tls_certificate_expiry_timestamp_seconds",
        "stickless_replication_minority",
    ] {
        assert!(checked.contains(name), "{name} is named by neither the rules nor the dashboard");
    }
}

/// The certificate's notAfter, as openssl prints it, in Unix seconds.
fn openssl_not_after(pem: &Path) -> u64 {
    let end = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
        .arg(pem)
        .output()
        .expect("openssl (scripts/test installs it)");
    let end = String::from_utf8(end.stdout).unwrap();
    let end = end.trim().strip_prefix("notAfter=").unwrap().to_string();
    let epoch = Command::new("date").args(["-u", "-d", &end, "+%s"]).output().unwrap();
    String::from_utf8(epoch.stdout).unwrap().trim().parse().unwrap()
}

/// RFC 5280 writes a notAfter up to 2049 as UTCTime and from 2050 on as
/// GeneralizedTime: the expiry metric reads both as openssl does.
#[test]
fn certificate_expiry_is_read_in_both_time_encodings() {
    let pki = Pki::new("expiry-encodings");
    for (name, days) in [("soon", "30"), ("after-2050", "15000")] {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .args(["-keyout", &key, "-out", &pem, "-days", days, "-subj", "/CN=expiry"])
            .current_dir(&pki.dir)
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let chain = stickless::tls::load_chain(&pki.path(&pem)).unwrap();
        assert_eq!(stickless::tls::chain_expiry(&chain), Some(openssl_not_after(&pki.path(&pem))), "{name}");
    }
    let _ = std::fs::remove_dir_all(&pki.dir);
}

#[test]
fn metric_names_are_read_out_of_queries_with_their_exact_matchers() {
    let named = named_metrics(
        r#"sum(rate(stickless_lookups_total{command="get",result="hit",instance=~"$i"}[5m])) / stickless_items and instance:stickless_x:rate5m"#,
    );
    assert_eq!(
        named,
        vec![
            (
                "stickless_lookups_total".to_string(),
                vec![("command".into(), "get".into()), ("result".into(), "hit".into())]
            ),
            ("stickless_items".to_string(), vec![]),
        ]
    );
}
