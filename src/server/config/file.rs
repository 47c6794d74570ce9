//! `--config-file FILE`: options read from a file in `/etc/memcached.conf`'s style.

/// The options of a configuration file in `/etc/memcached.conf`'s style: one
/// option (and its value) per line, `#` comments, blank lines. Debian's start
/// script reads that file's `logfile` line itself; here the log goes to standard
/// error (the journal, under systemd), so the line is skipped.
pub fn config_file_options(path: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the configuration file {path}: {e}"))?;
    let mut options = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with("logfile") {
            continue;
        }
        match line.split_once(char::is_whitespace) {
            Some((option, value)) if !option.contains('=') => {
                options.push(option.to_string());
                options.push(value.trim().to_string());
            }
            _ => options.push(line.to_string()),
        }
    }
    Ok(options)
}
