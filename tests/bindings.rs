//! Every binding in `bindings/` runs its own tests against the cdylib cargo built for
//! these tests. Each host also embeds a node that serves memcached clients and
//! replicates with a stickless daemon this harness starts: the host finds the daemon
//! at `STICKLESS_TEST_DAEMON` (memcached) and `STICKLESS_TEST_PEER` (replication), and
//! the library at `STICKLESS_LIBRARY` (or as `libstickless.so.1` on
//! `LD_LIBRARY_PATH`). A missing runtime fails its test: `scripts/test` installs them.

mod common;

use common::Daemon;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A directory holding the cdylib cargo built with these tests under its link
/// name and its SONAME, `libstickless.so.1`.
fn library_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let library = common::built_cdylib();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bindings");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["libstickless.so", "libstickless.so.1"] {
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&library, &link).unwrap();
        }
        dir
    })
}

/// A scratch directory for one binding's build products.
fn build_dir(binding: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bindings").join(binding);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e} (scripts/test installs it)"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{command:?} failed ({}):\n{text}", output.status);
    text
}

/// Runs a binding's test program against the library and a fresh daemon to peer with.
fn run_host(command: &mut Command) -> String {
    let daemon = Daemon::start(&["--repl-listen", "127.0.0.1:0"]);
    let library_dir = library_dir();
    command
        .env("STICKLESS_LIBRARY", library_dir.join("libstickless.so.1"))
        .env("LD_LIBRARY_PATH", library_dir)
        .env("STICKLESS_TEST_DAEMON", daemon.addr.to_string())
        .env("STICKLESS_TEST_PEER", daemon.repl_addr.expect("replication address").to_string());
    run(command)
}

#[test]
fn c_host_passes_every_check_under_valgrind() {
    let library_dir = library_dir();
    let program = build_dir("c").join("test");
    run(Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-D_DEFAULT_SOURCE", "-I"])
        .arg(root().join("include"))
        .arg(root().join("bindings/c/test.c"))
        .arg("-L")
        .arg(library_dir)
        .arg("-lstickless")
        .arg(format!("-Wl,-rpath,{}", library_dir.display()))
        .arg("-o")
        .arg(&program));
    let output = run_host(
        Command::new("valgrind")
            .args(["-q", "--child-silent-after-fork=yes", "--leak-check=full"])
            .args(["--errors-for-leak-kinds=definite,indirect", "--error-exitcode=3"])
            .arg(&program),
    );
    assert!(output.contains("ok\n"), "{output}");
}

/// The static library cargo built beside the cdylib.
fn static_library() -> PathBuf {
    let dynamic = std::fs::canonicalize(library_dir().join("libstickless.so")).unwrap();
    let path = dynamic.with_file_name("libstickless.a");
    assert!(path.exists(), "no {path:?}");
    path
}

#[test]
fn c_host_links_the_static_library_too() {
    let program = build_dir("c-static").join("test");
    run(Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-D_DEFAULT_SOURCE", "-I"])
        .arg(root().join("include"))
        .arg(root().join("bindings/c/test.c"))
        .arg(static_library())
        // What Rust's standard library needs from the system (rustc
        // --print native-static-libs).
        .args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc", "-o"])
        .arg(&program));
    let dynamic_deps = run(Command::new("ldd").arg(&program));
    assert!(!dynamic_deps.contains("libstickless"), "{dynamic_deps}");
    let output = run_host(&mut Command::new(&program));
    assert!(output.contains("ok\n"), "{output}");
}

#[test]
fn the_library_exports_exactly_the_headers_functions() {
    let header = std::fs::read_to_string(root().join("include/stickless.h")).unwrap();
    // Every `stickless_name(` in the header: the functions it declares.
    let mut declared: Vec<&str> = header
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '('))
        .filter_map(|word| word.split_once('(').map(|(name, _)| name))
        .filter(|name| name.starts_with("stickless_"))
        .collect();
    declared.sort_unstable();
    declared.dedup();
    let symbols = run(Command::new("nm").args(["-D", "--defined-only"]).arg(library_dir().join("libstickless.so")));
    let mut exported: Vec<&str> = symbols.lines().filter_map(|line| line.split_whitespace().nth(2)).collect();
    exported.sort_unstable();
    assert_eq!(exported, declared);
}

#[test]
fn header_compiles_as_cpp() {
    run(Command::new("g++")
        .args(["-std=c++17", "-fsyntax-only", "-Wall", "-Werror", "-x", "c++"])
        .arg(root().join("include/stickless.h")));
}

#[test]
fn python_binding_passes_its_tests() {
    // Debian's python3 with its python3-cffi: what scripts/test installs.
    let output = run_host(
        Command::new("/usr/bin/python3")
            .args(["-m", "unittest", "discover", "-v", "-s"])
            .arg(root().join("bindings/python/tests"))
            .env("PYTHONPATH", root().join("bindings/python"))
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    );
    assert!(output.contains("\nOK"), "{output}");
}

#[test]
fn php_binding_passes_its_tests() {
    let output = run_host(Command::new("php").arg(root().join("bindings/php/tests/test.php")));
    assert!(output.contains("ok\n"), "{output}");
}

/// php-fpm, its master started by this test and stopped with SIGTERM (which stops its
/// worker too), by PID.
struct PhpFpm(std::process::Child);

impl Drop for PhpFpm {
    fn drop(&mut self) {
        // SAFETY: signals a child this test started and has not yet reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// One FastCGI GET of `script` through cgi-fcgi; the reply's headers and body.
fn fastcgi_get(port: u16, script: &Path, cookie: &str) -> String {
    run(Command::new("cgi-fcgi")
        .args(["-bind", "-connect", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("SCRIPT_FILENAME", script)
        .env("REQUEST_METHOD", "GET")
        .env("HTTP_COOKIE", cookie))
}

#[test]
fn php_fpm_keeps_sessions_in_an_embedded_node_loaded_by_ffi_preload() {
    let dir = build_dir("php-fpm");
    // What a deployment writes once: the directive-free header with the two lines
    // PHP's FFI reads to name the scope and find the library.
    let header = format!(
        "#define FFI_SCOPE \"stickless\"\n#define FFI_LIB \"{}\"\n{}",
        library_dir().join("libstickless.so.1").display(),
        std::fs::read_to_string(root().join("bindings/php/src/stickless.ffi.h")).unwrap()
    );
    let preload = dir.join("stickless.h");
    std::fs::write(&preload, header).unwrap();
    let daemon = Daemon::start(&["--repl-listen", "127.0.0.1:0"]);
    let port = common::free_port();
    let config = dir.join("php-fpm.conf");
    std::fs::write(
        &config,
        format!(
            "[global]\nerror_log = {log}\ndaemonize = no\n\n[www]\nlisten = 127.0.0.1:{port}\n\
             pm = static\npm.max_children = 1\nclear_env = yes\nenv[STICKLESS_TEST_PEER] = {peer}\n",
            log = dir.join("php-fpm.log").display(),
            peer = daemon.repl_addr.unwrap(),
        ),
    )
    .unwrap();
    let fpm = PhpFpm(
        Command::new("php-fpm8.2")
            .arg("--nodaemonize")
            .arg("--allow-to-run-as-root")
            .arg("--fpm-config")
            .arg(&config)
            // ffi.enable stays at its default, "preload": only the preloaded
            // classes may use FFI, and only its preloaded scope.
            .arg("-d")
            .arg(format!("ffi.preload={}", preload.display()))
            .arg("-d")
            .arg(format!("opcache.preload={}", root().join("bindings/php/preload.php").display()))
            // Preloading refuses to run as root unless told whom to run as.
            .args(["-d", "opcache.preload_user=root"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("php-fpm8.2 (scripts/test installs php8.2-fpm)"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "php-fpm did not listen on {port}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let script = root().join("bindings/php/tests/fpm-session.php");
    let first = fastcgi_get(port, &script, "");
    let id = first
        .split("PHPSESSID=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie:\n{first}"))
        .to_string();
    assert!(first.contains(&format!("count=1 id={id} ")), "{first}");
    let second = fastcgi_get(port, &script, &format!("PHPSESSID={id}"));
    assert!(second.contains(&format!("count=2 id={id} ")), "{second}");

    // The session is on the daemon the worker's node replicates with, and on the
    // node's own listener.
    let key = format!("memc.sess.key.{id}");
    let expected = format!("VALUE {key} 0 10\r\ncount|i:2;\r\nEND\r\n").into_bytes();
    let mut client = common::Client::connect(daemon.addr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while client.request(format!("get {key}\r\n").as_bytes(), b"END\r\n") != expected {
        assert!(std::time::Instant::now() < deadline, "the session never reached the daemon");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let served: u16 = second.split("port=").nth(1).and_then(|p| p.trim().parse().ok()).expect("port");
    let mut local = common::Client::connect(std::net::SocketAddr::from(([127, 0, 0, 1], served)));
    assert_eq!(local.request(format!("get {key}\r\n").as_bytes(), b"END\r\n"), expected);
    drop(fpm);
}

/// Every `.java` file under `dir`.
fn java_sources(dir: &Path) -> Vec<PathBuf> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources.extend(java_sources(&path));
        } else if path.extension().is_some_and(|ext| ext == "java") {
            sources.push(path);
        }
    }
    sources
}

#[test]
fn java_binding_passes_its_tests() {
    // Debian's JNA (libjna-java) and a JDK of release 17.
    let jna = "/usr/share/java/jna.jar";
    let classes = build_dir("java");
    run(Command::new("javac")
        .args(["--release", "17", "-Xlint:all", "-Werror", "-cp", jna, "-d"])
        .arg(&classes)
        .args(java_sources(&root().join("bindings/java/src"))));
    let output = run_host(
        Command::new("java").arg("-cp").arg(format!("{}:{jna}", classes.display())).arg("stickless.StoreTest"),
    );
    assert!(output.contains("ok\n"), "{output}");
}

#[test]
fn dotnet_binding_passes_its_tests_on_mono() {
    let out = build_dir("dotnet");
    let library = out.join("Stickless.dll");
    let program = out.join("StoreTest.exe");
    run(Command::new("mcs")
        .args(["-warnaserror", "-t:library"])
        .arg(format!("-out:{}", library.display()))
        .arg(root().join("bindings/dotnet/Stickless.cs")));
    run(Command::new("mcs")
        .args(["-warnaserror", "-r:System.dll"])
        .arg(format!("-r:{}", library.display()))
        .arg(format!("-out:{}", program.display()))
        .arg(root().join("bindings/dotnet/tests/StoreTest.cs")));
    let output = run_host(Command::new("mono").arg(&program));
    assert!(output.contains("ok\n"), "{output}");
}

#[test]
fn node_binding_passes_its_tests() {
    let dir = root().join("bindings/node");
    assert!(dir.join("node_modules/koffi").exists(), "koffi is not installed: scripts/test runs npm ci in {dir:?}");
    let output = run_host(Command::new("node").args(["--test", "test/"]).current_dir(&dir));
    assert!(output.contains("# fail 0"), "{output}");
}

/// A session switched back and forth between a Java and a Mono state service, each
/// embedding a node that replicates with the same daemon: each takes the session up
/// where the other left it.
#[test]
fn a_session_switches_between_a_java_and_a_mono_state_service() {
    let jna = "/usr/share/java/jna.jar";
    let classes = build_dir("state-service-java");
    let mut sources = java_sources(&root().join("bindings/java/src/main"));
    sources.push(root().join("bindings/java/examples/StateService.java"));
    run(Command::new("javac")
        .args(["--release", "17", "-Xlint:all", "-Werror", "-cp", jna, "-d"])
        .arg(&classes)
        .args(sources));
    let mono_dir = build_dir("state-service-mono");
    let (library, program) = (mono_dir.join("Stickless.dll"), mono_dir.join("StateService.exe"));
    run(Command::new("mcs")
        .args(["-warnaserror", "-t:library"])
        .arg(format!("-out:{}", library.display()))
        .arg(root().join("bindings/dotnet/Stickless.cs")));
    run(Command::new("mcs")
        .arg("-warnaserror")
        .arg(format!("-r:{}", library.display()))
        .arg(format!("-out:{}", program.display()))
        .arg(root().join("bindings/dotnet/examples/StateService.cs")));

    let daemon = Daemon::start(&["--repl-listen", "127.0.0.1:0"]);
    let peer = daemon.repl_addr.unwrap().to_string();
    let visit = |java: bool| -> String {
        let mut command = if java {
            let mut c = Command::new("java");
            c.arg("-cp").arg(format!("{}:{jna}", classes.display())).arg("StateService");
            c
        } else {
            let mut c = Command::new("mono");
            c.arg(&program);
            c
        };
        command
            .args([peer.as_str(), "basket-42"])
            .env("LD_LIBRARY_PATH", library_dir())
            .env("STICKLESS_LIBRARY", library_dir().join("libstickless.so.1"));
        run(&mut command)
    };
    for (turn, java) in [true, false, true, false].into_iter().enumerate() {
        let expected = format!("{} {}\n", if java { "java" } else { "mono" }, turn + 1);
        assert_eq!(visit(java), expected);
    }
    // The daemon holds the session as the last service left it.
    let mut client = common::Client::connect(daemon.addr);
    assert_eq!(
        client.request(b"get state:basket-42\r\n", b"END\r\n"),
        b"VALUE state:basket-42 0 7\r\ncount=4\r\nEND\r\n"
    );
}
