//! The Debian package (`scripts/deb`): its contents, its systemd unit checked by
//! `systemd-analyze verify`, an install into a scratch root with dpkg, the
//! installed daemon started from the installed configuration file, and the
//! `Type=notify` readiness it sends; the dependencies dpkg-shlibdeps computed, and
//! the Prometheus rules and Grafana dashboard it ships.

mod common;

use common::{Client, Daemon};
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    common::scratch_dir(&format!("package-{name}"))
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Builds the package from this test build's binary and library.
fn build_package(out: &Path) -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_stickless"));
    let library = common::built_cdylib();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/deb");
    let printed = run(
        script,
        &["--binary", binary.to_str().unwrap(), "--library", library.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    PathBuf::from(printed.trim())
}

#[test]
fn the_package_installs_its_files_and_its_unit_verifies() {
    let dir = scratch("install");
    let package = build_package(&dir.join("out"));
    let contents = run("dpkg-deb", &["-c", package.to_str().unwrap()]);
    let multiarch = run("dpkg-architecture", &["-qDEB_HOST_MULTIARCH"]);
    let files = [
        "./usr/bin/stickless".to_string(),
        format!("./usr/lib/{}/libstickless.so", multiarch.trim()),
        "./usr/include/stickless.h".into(),
        "./lib/systemd/system/stickless.service".into(),
        "./etc/stickless/stickless.conf".into(),
        "./usr/share/man/man1/stickless.1.gz".into(),
        "./usr/share/doc/stickless/copyright".into(),
        "./usr/share/stickless/prometheus/stickless.rules.yml".into(),
        "./usr/share/stickless/prometheus/stickless.rules.test.yml".into(),
        "./usr/share/stickless/grafana/stickless.json".into(),
    ];
    for file in &files {
        assert!(contents.lines().any(|line| line.ends_with(file.as_str())), "{file} missing:\n{contents}");
    }
    assert!(contents.lines().all(|line| line.contains("root/root")), "{contents}");
    assert_eq!(run("dpkg-deb", &["-f", package.to_str().unwrap(), "Package"]).trim(), "stickless");
    let conffiles = run("dpkg-deb", &["-I", package.to_str().unwrap(), "conffiles"]);
    assert_eq!(conffiles.trim(), "/etc/stickless/stickless.conf");
    depends_on_what_the_binaries_link(&package, &[Path::new(env!("CARGO_BIN_EXE_stickless")), &common::built_cdylib()]);

    // Installed by dpkg into a scratch root with a database of its own.
    let root = dir.join("root");
    for sub in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let root_arg = format!("--root={}", root.display());
    run("dpkg", &[&root_arg, "--force-depends", "--force-not-root", "-i", package.to_str().unwrap()]);
    let status = run("dpkg", &[&root_arg, "-s", "stickless"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    for file in &files {
        assert!(root.join(file.trim_start_matches("./")).exists(), "{file} not installed");
    }

    // The unit, pointed at the installed binary, passes systemd's own check.
    let installed = root.join("usr/bin/stickless");
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/stickless.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"), "{unit}");
    let check = dir.join("stickless.service");
    std::fs::write(&check, unit.replace("/usr/bin/stickless", installed.to_str().unwrap())).unwrap();
    let verify = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&check).output().unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // The rules and their unit tests pass promtool where the package put them.
    let rules = root.join("usr/share/stickless/prometheus");
    let test =
        Command::new("promtool").args(["test", "rules", "stickless.rules.test.yml"]).current_dir(&rules).output();
    let test = test.expect("promtool (scripts/test installs Debian's prometheus package)");
    assert!(test.status.success(), "{}", String::from_utf8_lossy(&test.stdout));

    // The man page came from -h.
    let man = Command::new("zcat").arg(root.join("usr/share/man/man1/stickless.1.gz")).output().unwrap();
    let man = String::from_utf8(man.stdout).unwrap();
    assert!(man.contains(".TH STICKLESS \"1\"") && man.contains("memory\\-file"), "{man}");

    // The installed daemon runs from the installed configuration, which the unit names.
    let conf = root.join("etc/stickless/stickless.conf");
    assert!(unit.contains("--config-file /etc/stickless/stickless.conf"));
    let items = dir.join("items");
    assert!(run(installed.to_str().unwrap(), &["--version"]).starts_with("stickless "));
    let node = Daemon::start(&["--config-file", conf.to_str().unwrap(), "-p", "0", "-e", items.to_str().unwrap()]);
    assert_eq!(
        Client::connect(node.addr).step(b"set k 0 0 1\r\nv\r\nget k\r\n"),
        b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The package's Depends names, with a version, the package of every shared
/// library the binaries link (their NEEDED entries, owned per `dpkg -S`), and
/// nothing else: dpkg-shlibdeps computed it.
fn depends_on_what_the_binaries_link(package: &Path, binaries: &[&Path]) {
    let depends = run("dpkg-deb", &["-f", package.to_str().unwrap(), "Depends"]);
    let named: std::collections::BTreeSet<&str> =
        depends.trim().split(", ").map(|dep| dep.split(' ').next().unwrap()).collect();
    for dep in depends.trim().split(", ") {
        assert!(dep.contains(" (>= "), "{dep} carries the version its symbols need: {depends}");
    }
    let multiarch = run("dpkg-architecture", &["-qDEB_HOST_MULTIARCH"]);
    let multiarch = multiarch.trim();
    let mut owners = std::collections::BTreeSet::new();
    for binary in binaries {
        let dynamic = run("objdump", &["-p", binary.to_str().unwrap()]);
        for soname in dynamic.lines().filter_map(|line| line.trim().strip_prefix("NEEDED")).map(str::trim) {
            // Under merged /usr, dpkg knows a library by the path its package
            // ships, /lib or /usr/lib: the first that `dpkg -S` names.
            let owner =
                [format!("/lib/{multiarch}"), format!("/usr/lib/{multiarch}"), "/lib64".into(), "/usr/lib64".into()]
                    .iter()
                    .map(|dir| Path::new(dir).join(soname))
                    .filter(|path| path.exists())
                    .find_map(|path| {
                        // "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6"
                        let owner = Command::new("dpkg").arg("-S").arg(&path).output().unwrap();
                        let owner = String::from_utf8(owner.stdout).unwrap();
                        Some(owner.split(':').next()?.trim().to_string()).filter(|owner| !owner.is_empty())
                    })
                    .unwrap_or_else(|| panic!("no installed package ships {soname}"));
            owners.insert(owner);
        }
    }
    assert_eq!(named, owners.iter().map(String::as_str).collect(), "Depends: {depends}");
}

/// Under systemd (`NOTIFY_SOCKET`), the daemon says READY=1 once it listens, and
/// STOPPING=1 when it stops.
#[test]
fn the_daemon_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = scratch("notify");
    let socket_path = dir.join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(common::EXCHANGE_DEADLINE)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stickless"))
        .args(["-l", "127.0.0.1", "-p", "0", "-u", "root"])
        .env("NOTIFY_SOCKET", &socket_path)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("READY=1 within the deadline");
    assert_eq!(&buf[..n], b"READY=1");
    // SAFETY: kill(2) on the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--config-file` reads /etc/memcached.conf's style, skipping its `logfile` line.
#[test]
fn debians_memcached_conf_reads_as_a_config_file() {
    let options = stickless::server::config_file_options("/etc/memcached.conf").unwrap();
    assert!(options.windows(2).any(|w| w == ["-m", "64"]), "{options:?}");
    assert!(!options.iter().any(|o| o.contains("logfile")), "{options:?}");
}
