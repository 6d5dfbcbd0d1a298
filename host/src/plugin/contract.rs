//! What a component claims to be: its imports and exports, and whether it speaks our contract.

use anyhow::{Result, bail};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The WIT package of the contract.
pub const CONTRACT_PACKAGE: &str = "wasmsock:plugin";
/// The contract version this host implements (from `wit/wasmsock.wit`).
pub const CONTRACT_VERSION: &str = "0.2.0";
/// Every contract version this host serves: the current one, and the older ones kept in
/// `wit/v<version>/` so that plugins built against them keep working.
pub const SERVED_VERSIONS: &[&str] = &[CONTRACT_VERSION, "0.1.0"];

/// Interfaces the host provides; a plugin importing anything else loads, but those calls trap.
/// (`wasi:http` is provided, under each plugin's outbound policy: deny unless allowed.)
const PROVIDED: &[&str] = &[
    "wasmsock:plugin/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// True for an import the host does not provide (sockets, HTTP, ...).
pub fn is_trapped_import(name: &str) -> bool {
    !PROVIDED.iter().any(|p| name.starts_with(p))
}

#[derive(Debug, Clone)]
pub struct ComponentSummary {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Version of `wasmsock:plugin/handler` the component exports, if any.
    pub contract: Option<String>,
}

pub fn inspect(engine: &Engine, component: &Component) -> ComponentSummary {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let contract = exports.iter().find_map(|e| e.strip_prefix("wasmsock:plugin/handler@")).map(str::to_owned);
    ComponentSummary { imports, exports, contract }
}

/// Semver compatibility as the component model links it: same major, and for 0.x the same minor.
pub(crate) fn compatible(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parse(a), parse(b)) {
        (Some((0, a_minor)), Some((0, b_minor))) => a_minor == b_minor,
        (Some((a_major, _)), Some((b_major, _))) => a_major == b_major,
        _ => false,
    }
}

impl ComponentSummary {
    /// Refuses components that are not plugins for this host's contract, saying what they are.
    pub fn check(&self) -> Result<()> {
        let ours = CONTRACT_VERSION;
        let Some(version) = &self.contract else {
            if let Some(other) = self.exports.iter().find(|e| e.starts_with("wasmsock:plugin/")) {
                bail!("exports {other} but not wasmsock:plugin/handler; rebuild it with wasmsock-sdk {ours}");
            }
            bail!(
                "not a wasmsock plugin: it does not export {CONTRACT_PACKAGE}/handler (exports: {}); \
                 build it with wasmsock-sdk's export_plugin!",
                if self.exports.is_empty() { "none".into() } else { self.exports.join(", ") }
            );
        };
        let served = |v: &str| SERVED_VERSIONS.iter().any(|s| compatible(v, s));
        if !served(version) {
            bail!(
                "built for contract {CONTRACT_PACKAGE}@{version}, but this host speaks {CONTRACT_PACKAGE}@{ours} \
                 (and serves {}); rebuild the plugin with wasmsock-sdk {ours} (or run a wasmsock that speaks {version})",
                SERVED_VERSIONS.join(", ")
            );
        }
        for import in &self.imports {
            if let Some(v) = import.strip_prefix("wasmsock:plugin/").and_then(|r| r.split_once('@')).map(|(_, v)| v)
                && !compatible(v, version)
            {
                bail!(
                    "imports {import}, but this host speaks {CONTRACT_PACKAGE}@{ours}; rebuild it with wasmsock-sdk {ours}"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(compatible("0.1.0", "0.1.7"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(compatible("1.2.0", "1.0.0"));
        assert!(!compatible("2.0.0", "1.0.0"));
        let built_for = |v: &str| ComponentSummary {
            imports: vec![format!("wasmsock:plugin/host@{v}")],
            exports: vec![format!("wasmsock:plugin/handler@{v}")],
            contract: Some(v.into()),
        };
        assert!(built_for("0.1.0").check().is_ok(), "an older contract this host still serves");
        assert!(built_for("0.2.3").check().is_ok());
        let e = built_for("0.9.0").check().unwrap_err().to_string();
        assert!(e.contains("0.9.0") && e.contains(CONTRACT_VERSION), "{e}");
        let s = ComponentSummary { imports: vec![], exports: vec!["wasi:cli/run@0.2.0".into()], contract: None };
        assert!(s.check().unwrap_err().to_string().contains("not a wasmsock plugin"));
    }
}
