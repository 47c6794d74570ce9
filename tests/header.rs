//! The committed headers are what cbindgen makes of `src/ffi` now, and so are the
//! copies the Python and PHP bindings load at run time. After changing the ABI,
//! `STICKLESS_BLESS=1 cargo test --test header` rewrites them all.

use std::path::Path;

fn generate(config: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("include").join(config)).expect("cbindgen config");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen generates")
        .write(&mut out);
    String::from_utf8(out).expect("utf-8")
}

/// Checks (or, blessing, writes) every committed copy of what `config` generates.
fn check(config: &str, headers: &[&str]) -> String {
    let generated = generate(config);
    for header in headers {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(header);
        if std::env::var_os("STICKLESS_BLESS").is_some() {
            std::fs::write(&path, &generated).expect("write header");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{header} is not what src/ffi generates; run STICKLESS_BLESS=1 cargo test --test header"
        );
    }
    generated
}

#[test]
fn c_header_is_up_to_date() {
    let header = check("cbindgen.toml", &["include/stickless.h"]);
    assert!(header.contains("int32_t stickless_get("), "{header}");
}

#[test]
fn directive_free_header_is_up_to_date_and_has_no_preprocessor_line() {
    let header = check(
        "cbindgen-ffi.toml",
        &["include/stickless.ffi.h", "bindings/python/stickless/stickless.ffi.h", "bindings/php/src/stickless.ffi.h"],
    );
    assert!(!header.lines().any(|line| line.trim_start().starts_with('#')), "{header}");
    assert!(!header.contains("extern \"C\""), "{header}");
}
