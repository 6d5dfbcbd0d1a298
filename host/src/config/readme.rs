//! The README's configuration tables against the code: every key of every section is in its
//! table, and every default the table states is the one in `defaults`, read the way the
//! configuration file would read it. A default that is described rather than stated ("a fifth
//! of `deadline`") is listed here word for word, so a new key or a changed default without a
//! check here fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::FileConfig;
use super::defaults as d;
use super::units::{ByteSize, Dur};

/// Checks one README default cell (as written, backticks and all).
type Check = Box<dyn Fn(&str) -> Result<(), String>>;

/// The cell states a value: one code span that, as the value of a key in the file, reads as
/// `want`.
fn value<T: DeserializeOwned + PartialEq + Debug + 'static>(want: T) -> Check {
    Box::new(move |cell| {
        let text = cell
            .strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .filter(|c| !c.contains('`'))
            .ok_or_else(|| format!("{cell} is not a value in backticks"))?;
        #[derive(Deserialize)]
        struct Key<T> {
            key: T,
        }
        let got = toml::from_str::<Key<T>>(&format!("key = {text}")).map_err(|e| format!("{cell}: {e}"))?.key;
        if got == want { Ok(()) } else { Err(format!("{cell} reads as {got:?}, the default is {want:?}")) }
    })
}

fn size(bytes: usize) -> Check {
    value(ByteSize(bytes as u64))
}

fn duration(d: std::time::Duration) -> Check {
    value(Dur(d))
}

/// The cell describes the default instead of stating it.
fn prose(text: &'static str) -> Check {
    Box::new(move |cell| if cell == text { Ok(()) } else { Err(format!("{cell:?}, expected {text:?}")) })
}

/// The default is no value: the cell says `off`.
fn off<T>(default: Option<T>) -> Check {
    let is_none = default.is_none();
    Box::new(move |cell| match (cell, is_none) {
        ("off", true) => Ok(()),
        _ => Err(format!("{cell:?}: the default is {}", if is_none { "off" } else { "a value" })),
    })
}

/// Section ("" for the top level) and key, with the check of the key's default.
fn checks() -> Vec<(&'static str, &'static str, Check)> {
    vec![
        ("", "listen", value(d::LISTEN.to_owned())),
        ("", "plugin_dir", value(d::PLUGIN_DIR.to_owned())),
        ("", "state_dir", value(d::STATE_DIR.to_owned())),
        ("", "log_format", value(d::LOG_FORMAT)),
        ("tls", "cert", prose("none")),
        ("tls", "key", prose("none")),
        ("tls", "client_ca", prose("none")),
        ("tls", "client_auth", prose("`\"required\"` with `client_ca`, else `\"off\"`")),
        ("tls", "plain", value(d::tls::PLAIN)),
        ("origins", "allow", prose("absent: same origin only")),
        ("origins", "allow_missing", value(d::origins::ALLOW_MISSING)),
        ("origins", "public", prose("none")),
        ("limits", "max_message_size", size(d::limits::MAX_MESSAGE_SIZE)),
        ("limits", "max_frame_size", prose("`max_message_size`")),
        ("limits", "write_timeout", duration(d::limits::WRITE_TIMEOUT)),
        ("limits", "idle_timeout", off(d::limits::IDLE_TIMEOUT)),
        ("limits", "ping_interval", duration(d::limits::PING_INTERVAL)),
        ("limits", "pong_timeout", duration(d::limits::PONG_TIMEOUT)),
        ("limits", "message_timeout", duration(d::limits::MESSAGE_TIMEOUT)),
        ("limits", "outbox_messages", value(d::limits::OUTBOX_MESSAGES)),
        ("limits", "outbox_bytes", size(d::limits::OUTBOX_BYTES)),
        ("limits", "slow_consumer", value(d::limits::SLOW_CONSUMER)),
        ("compression", "enabled", value(d::compression::ENABLED)),
        ("compression", "context_takeover", value(d::compression::CONTEXT_TAKEOVER)),
        ("compression", "window_bits", value(d::compression::WINDOW_BITS)),
        ("compression", "min_size", size(d::compression::MIN_SIZE)),
        ("compression", "level", value(d::compression::LEVEL)),
        ("server", "max_connections", value(d::server::MAX_CONNECTIONS)),
        ("server", "max_connections_per_ip", value(d::server::MAX_CONNECTIONS_PER_IP)),
        ("server", "max_pending_handshakes", value(d::server::MAX_PENDING_HANDSHAKES)),
        ("server", "max_pending_handshakes_per_ip", value(d::server::MAX_PENDING_HANDSHAKES_PER_IP)),
        ("server", "max_buffered_bytes", size(d::server::MAX_BUFFERED_BYTES)),
        ("server", "tls_handshake_timeout", duration(d::server::TLS_HANDSHAKE_TIMEOUT)),
        ("server", "ws_handshake_timeout", duration(d::server::WS_HANDSHAKE_TIMEOUT)),
        ("server", "max_header_bytes", size(d::server::MAX_HEADER_BYTES)),
        ("server", "shutdown_grace", duration(d::server::SHUTDOWN_GRACE)),
        ("server", "close_timeout", duration(d::server::CLOSE_TIMEOUT)),
        ("server", "nofile_limit", value(d::server::NOFILE_LIMIT)),
        ("server", "proxy_protocol", value(d::server::PROXY_PROTOCOL)),
        ("server", "detailed_errors", value(d::server::DETAILED_ERRORS)),
        ("admin", "listen", value(d::admin::LISTEN.to_owned())),
        ("static", "dir", prose("none")),
        ("routes", "path", prose("required")),
        ("routes", "plugins", value(Vec::<String>::new())),
        ("routes", "builtin", prose("none")),
        ("routes", "origins", prose("`[origins]`, `[limits]`, `[compression]`")),
        ("routes", "limits", prose("`[origins]`, `[limits]`, `[compression]`")),
        ("routes", "compression", prose("`[origins]`, `[limits]`, `[compression]`")),
        ("http_routes", "path", prose("required")),
        ("http_routes", "plugin", prose("required")),
        ("http_routes", "max_body_size", size(d::http::MAX_BODY_SIZE)),
        ("http_routes", "max_concurrent", value(d::http::MAX_CONCURRENT)),
        ("http_routes", "request_timeout", duration(d::http::REQUEST_TIMEOUT)),
        ("http_routes", "idle_timeout", duration(d::http::IDLE_TIMEOUT)),
        ("plugin_defaults", "deadline", duration(d::plugin::DEADLINE)),
        ("plugin_defaults", "slow_call", prose("a fifth of `deadline`")),
        ("plugin_defaults", "max_memory", size(d::plugin::MAX_MEMORY)),
        ("plugin_defaults", "max_table_elements", value(d::plugin::MAX_TABLE_ELEMENTS)),
        ("plugin_defaults", "on_error", value(d::plugin::ON_ERROR)),
        ("plugin_defaults", "max_failures", value(d::plugin::MAX_FAILURES)),
        ("plugin_defaults", "failure_window", duration(d::plugin::FAILURE_WINDOW)),
        ("plugin_defaults", "quarantine", duration(d::plugin::QUARANTINE)),
        ("plugin_defaults", "max_sends_per_call", value(d::plugin::MAX_SENDS_PER_CALL)),
        ("plugin_defaults", "max_send_bytes_per_call", size(d::plugin::MAX_SEND_BYTES_PER_CALL)),
        ("plugin_defaults", "max_host_memory", off(d::plugin::MAX_HOST_MEMORY)),
        ("plugin_defaults", "max_log_bytes", size(d::plugin::MAX_LOG_BYTES)),
        ("plugin_defaults", "max_idle_instances", value(d::plugin::MAX_IDLE_INSTANCES)),
        ("plugin_defaults", "max_timers", value(d::plugin::MAX_TIMERS)),
        (
            "plugin_defaults",
            "http_allowed_hosts",
            value(Vec::<String>::from_iter(d::plugin::HTTP_ALLOWED_HOSTS.iter().map(|s| s.to_string()))),
        ),
        ("plugin_defaults", "http_timeout", duration(d::plugin::HTTP_TIMEOUT)),
        ("plugin_defaults", "http_max_response", size(d::plugin::HTTP_MAX_RESPONSE)),
        ("plugin_defaults", "http_max_concurrent", value(d::plugin::HTTP_MAX_CONCURRENT)),
        ("plugin_defaults", "http_ca", off(d::plugin::HTTP_CA)),
        ("plugin_defaults", "http_allow_private", value(d::plugin::HTTP_ALLOW_PRIVATE)),
        ("plugin_defaults", "webhook_flush_delay", duration(d::plugin::WEBHOOK_FLUSH_DELAY)),
        ("plugin_defaults", "webhook_max_batch_events", value(d::plugin::WEBHOOK_MAX_BATCH_EVENTS)),
        ("plugin_defaults", "webhook_max_batch_bytes", size(d::plugin::WEBHOOK_MAX_BATCH_BYTES)),
        ("plugin_defaults", "webhook_max_queued_events", value(d::plugin::WEBHOOK_MAX_QUEUED_EVENTS)),
        ("plugin_defaults", "webhook_max_queued_bytes", size(d::plugin::WEBHOOK_MAX_QUEUED_BYTES)),
        ("plugin_defaults", "webhook_max_attempts", value(d::plugin::WEBHOOK_MAX_ATTEMPTS)),
        ("plugin_defaults", "webhook_retry_backoff", duration(d::plugin::WEBHOOK_RETRY_BACKOFF)),
        ("plugin_defaults", "webhook_max_concurrent", value(d::plugin::WEBHOOK_MAX_CONCURRENT)),
        ("plugin_defaults", "act_as", prose("none")),
        ("plugin_defaults", "config", prose("none")),
        ("host", "max_attachment", size(d::host::MAX_ATTACHMENT)),
        ("host", "max_rooms_per_connection", value(d::host::MAX_ROOMS_PER_CONNECTION)),
        ("host", "max_room_name", value(d::host::MAX_ROOM_NAME)),
        ("host", "kv_max_keys", value(d::host::KV_MAX_KEYS)),
        ("host", "kv_max_key", value(d::host::KV_MAX_KEY)),
        ("host", "kv_max_value", size(d::host::KV_MAX_VALUE)),
        ("host", "max_memory", size(d::host::MAX_HOST_MEMORY)),
        ("host", "max_history_memory", size(d::history_memory::MAX_HISTORY_MEMORY)),
        ("history", "rooms", prose("required")),
        ("history", "plugin", prose("every plugin")),
        ("history", "size", value(d::history::SIZE)),
        ("history", "ttl", duration(d::history::TTL)),
        ("history", "max_bytes", size(d::history::MAX_BYTES)),
        ("engine", "max_instances", value(d::engine::MAX_INSTANCES)),
        ("engine", "max_memory", size(d::engine::MAX_MEMORY)),
        ("engine", "epoch_tick", duration(d::engine::EPOCH_TICK)),
        ("engine", "max_plugin_size", size(d::engine::MAX_PLUGIN_SIZE)),
        ("broker", "url", prose("required, or `sentinels`")),
        ("broker", "sentinels", prose("none")),
        ("broker", "master_name", prose("none")),
        ("broker", "sentinel_password", prose("none")),
        ("broker", "password", prose("none")),
        ("broker", "ca", prose("system trust store")),
        ("broker", "cert", prose("none")),
        ("broker", "key", prose("none")),
        ("broker", "prefix", value(d::broker::PREFIX.to_owned())),
        ("broker", "shared_kv", value(d::broker::SHARED_KV)),
        ("broker", "max_pending", value(d::broker::MAX_PENDING)),
        ("broker", "max_pending_bytes", size(d::broker::MAX_PENDING_BYTES)),
        ("broker", "node_ttl", duration(d::broker::NODE_TTL)),
    ]
}

/// Section → key → default cell, from the tables under the README's "## Configuration".
fn readme_tables() -> BTreeMap<String, BTreeMap<String, String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme.find("\n## Configuration\n").expect("README has a Configuration section");
    let end = readme[start + 1..].find("\n## ").map_or(readme.len(), |i| start + 1 + i);
    let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = None;
    for line in readme[start..end].lines() {
        // A bold title names the section: **Top level**, **`[tls]`**, **`[[routes]]`**, ...
        if let Some(title) = line.strip_prefix("**") {
            let title = title.trim_start_matches('`');
            section = Some(match title.strip_prefix('[') {
                Some(rest) => rest.split(']').next().unwrap().trim_start_matches('[').to_owned(),
                None if title.starts_with("Top level**") => String::new(),
                None => panic!("README: unknown configuration section {line:?}"),
            });
            continue;
        }
        let Some(row) = line.strip_prefix("| `") else { continue };
        let section = section.as_ref().unwrap_or_else(|| panic!("README: table row before any section: {line}"));
        let mut cells = row.splitn(3, " | ");
        let (keys, default) = (cells.next().unwrap(), cells.next().unwrap().to_owned());
        for key in keys.split(", ") {
            let key = key.trim_matches('`').to_owned();
            let previous = tables.entry(section.clone()).or_default().insert(key.clone(), default.clone());
            assert!(previous.is_none(), "README: [{section}] {key} is in the table twice");
        }
    }
    tables
}

/// The keys the file accepts in `section`, from the error naming the expected ones.
fn code_keys(section: &str) -> BTreeSet<String> {
    let text = match section {
        "" => "unknown_key_for_the_test = 1\n".to_owned(),
        "routes" | "http_routes" | "history" => format!("[[{section}]]\nunknown_key_for_the_test = 1\n"),
        _ => format!("[{section}]\nunknown_key_for_the_test = 1\n"),
    };
    let err = toml::from_str::<FileConfig>(&text).unwrap_err().to_string();
    let expected = err.split_once("expected").unwrap_or_else(|| panic!("[{section}]: {err}")).1;
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn the_readme_states_the_defaults_of_the_code() {
    let tables = readme_tables();
    let mut failures = Vec::new();

    // Every key the file accepts is in its table (tables at the top level are sections;
    // `[plugins.NAME]` shares the table of `[plugin_defaults]`), and no table has more.
    for (section, documented) in &tables {
        let mut accepted = code_keys(section);
        if section.is_empty() {
            accepted.retain(|k| !tables.contains_key(k) && k != "plugins");
        }
        let documented: BTreeSet<String> = documented.keys().cloned().collect();
        for key in accepted.difference(&documented) {
            failures.push(format!("[{section}] {key}: accepted by the config file, missing in the README"));
        }
        for key in documented.difference(&accepted) {
            failures.push(format!("[{section}] {key}: in the README, unknown to the config file"));
        }
    }

    // Every README default is checked, and every check is of a README default.
    let mut checked = BTreeSet::new();
    for (section, key, check) in checks() {
        checked.insert((section.to_owned(), key.to_owned()));
        match tables.get(section).and_then(|t| t.get(key)) {
            Some(cell) => {
                if let Err(e) = check(cell) {
                    failures.push(format!("[{section}] {key}: {e}"));
                }
            }
            None => failures.push(format!("[{section}] {key}: checked here, not in the README")),
        }
    }
    for (section, table) in &tables {
        for key in table.keys() {
            if !checked.contains(&(section.clone(), key.clone())) {
                failures.push(format!("[{section}] {key}: in the README without a check in this test"));
            }
        }
    }
    assert!(failures.is_empty(), "README.md's configuration tables disagree with the code:\n{}", failures.join("\n"));
}

#[test]
fn the_checks_catch_a_wrong_default() {
    assert!(size(1 << 20)("`\"1MiB\"`").is_ok());
    assert!(size(1 << 20)("`1048576`").is_ok());
    assert!(size(1 << 20)("`\"2MiB\"`").is_err());
    assert!(duration(std::time::Duration::from_millis(50))("`\"50ms\"`").is_ok());
    assert!(duration(std::time::Duration::from_millis(50))("`\"5s\"`").is_err());
    assert!(value(10_000usize)("`10000`").is_ok());
    assert!(value(10_000usize)("`1000`").is_err());
    assert!(value(10_000usize)("10000").is_err(), "a value is in backticks");
    assert!(value(d::LOG_FORMAT)("`\"text\"`").is_ok());
    assert!(value(d::LOG_FORMAT)("`\"json\"`").is_err());
    assert!(prose("none")("`\"none\"`").is_err());
    assert!(off(None::<u8>)("off").is_ok() && off(Some(1))("off").is_err());
}
