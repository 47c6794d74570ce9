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

/// A directory holding the cdylib cargo built with these tests (found in
/// `target/<profile>/deps/`, or copied up to `target/<profile>/` by a build) under
/// its link name and its SONAME, `libstickless.so.1`.
fn library_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable");
        let deps = exe.parent().expect("target/<profile>/deps");
        let candidates = [deps.join("libstickless.so"), deps.parent().expect("target/<profile>").join("libstickless.so")];
        let library = candidates
            .iter()
            .find(|path| path.exists())
            .unwrap_or_else(|| panic!("no libstickless.so in {candidates:?}"));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bindings");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["libstickless.so", "libstickless.so.1"] {
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(library, &link).unwrap();
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
