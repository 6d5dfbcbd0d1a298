//! `wasmsock build`: compile plugin crates for wasm32-wasip2, validate them against this host's
//! contract, and install them into a plugin directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

pub const TARGET: &str = "wasm32-wasip2";

/// Builds each crate in `paths` (default: the current directory); with `install`, copies every
/// built plugin there.
pub fn build(paths: &[PathBuf], install: Option<&Path>) -> Result<()> {
    let default = [PathBuf::from(".")];
    let paths = if paths.is_empty() { &default[..] } else { paths };
    if paths.iter().any(|p| crate::guest_lang::detect(p).is_none()) {
        ensure_target()?;
    }
    let settings = crate::Settings::from_toml("", &crate::Overrides::default())?;
    let runtime = crate::plugin::Runtime::new(&settings.engine)?;
    for path in paths {
        // JavaScript/TypeScript and Python projects: their SDK's tooling builds the component.
        let (built, name) = match crate::guest_lang::detect(path) {
            Some(lang) => {
                let name = crate::guest_lang::project_name(path)
                    .with_context(|| format!("{}: no project name", path.display()))?;
                crate::config::validate_plugin_name(&name)?;
                (vec![crate::guest_lang::build(path, lang, &name)?], Some(name))
            }
            None => (build_one(path)?, None),
        };
        for wasm in built {
            let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
            crate::plugin::check_bytes(&runtime, &bytes)
                .with_context(|| format!("{} was built but is not a valid plugin", wasm.display()))?;
            // The plugin is named after the package (`my-plugin`), not the library file
            // (`my_plugin.wasm`).
            let name = name
                .clone()
                .or_else(|| package_name(path))
                .unwrap_or_else(|| wasm.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
            crate::config::validate_plugin_name(&name)?;
            match install {
                Some(dir) => {
                    let dest = install_file(&wasm, dir, &name)?;
                    eprintln!("installed {name} ({} bytes) -> {}", bytes.len(), dest.display());
                }
                None => eprintln!("built {name} ({} bytes): {}", bytes.len(), wasm.display()),
            }
        }
    }
    Ok(())
}

fn ensure_target() -> Result<()> {
    let out = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == TARGET) => Ok(()),
        Ok(_) => {
            eprintln!("installing the {TARGET} target (rustup target add {TARGET})");
            let status = Command::new("rustup").args(["target", "add", TARGET]).status()?;
            if !status.success() {
                bail!("`rustup target add {TARGET}` failed");
            }
            Ok(())
        }
        // No rustup: let cargo report a missing target itself.
        Err(_) => Ok(()),
    }
}

/// Runs cargo for one crate and returns the `.wasm` files it produced.
fn build_one(path: &Path) -> Result<Vec<PathBuf>> {
    let manifest = path.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("{} is not a crate directory (no Cargo.toml)", path.display());
    }
    // Without it the component has no handler to export, and the wasm linker fails with a
    // long trace that does not say so.
    if !mentions(&path.join("src"), "export_plugin!") {
        bail!(
            "{} exports no plugin: add `wasmsock_sdk::export_plugin!(YourPlugin);` to its library (src/lib.rs), \
             naming the type that implements `Plugin`",
            path.display()
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let child = Command::new(cargo)
        .args(["build", "--release", "--target", TARGET, "--message-format=json-render-diagnostics"])
        // Plugins ship without debug info: smaller files, faster loads.
        .args(["--config", "profile.release.debug=false", "--config", "profile.release.strip=true"])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !child.status.success() {
        bail!("cargo build failed for {}", path.display());
    }
    let mut wasm = Vec::new();
    for line in String::from_utf8_lossy(&child.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        let local = msg["manifest_path"].as_str().map(Path::new).is_some_and(|m| same_file(m, &manifest));
        if !(is_cdylib && local) {
            continue;
        }
        for f in msg["filenames"].as_array().into_iter().flatten() {
            if let Some(f) = f.as_str().filter(|f| f.ends_with(".wasm")) {
                wasm.push(PathBuf::from(f));
            }
        }
    }
    if wasm.is_empty() {
        bail!("{} built no wasm library: is it a plugin crate (crate-type = [\"cdylib\"])?", path.display());
    }
    Ok(wasm)
}

/// Whether any `.rs` file under `dir` contains `text`.
fn mentions(dir: &Path, text: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.filter_map(|e| e.ok().map(|e| e.path())).any(|p| {
        if p.is_dir() {
            mentions(&p, text)
        } else {
            p.extension().is_some_and(|e| e == "rs") && std::fs::read_to_string(&p).is_ok_and(|s| s.contains(text))
        }
    })
}

fn package_name(crate_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(crate_dir.join("Cargo.toml")).ok()?;
    let manifest: toml::Table = toml::from_str(&text).ok()?;
    manifest.get("package")?.get("name")?.as_str().map(str::to_owned)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copies `wasm` to `dir/NAME.wasm` through a hidden temporary file and a rename, so the
/// watcher never sees a half-written plugin.
fn install_file(wasm: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    let dest = dir.join(format!("{name}.wasm"));
    std::fs::copy(wasm, &tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &dest).with_context(|| format!("cannot install {}", dest.display()))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crate_without_export_plugin_is_told_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("wasmsock-build-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"p\"\n[lib]\ncrate-type = [\"cdylib\"]\n").unwrap();
        std::fs::create_dir_all(dir.join("src/inner")).unwrap();
        std::fs::write(dir.join("src/lib.rs"), "pub struct P;\nmod inner;\n").unwrap();
        let err = format!("{:#}", build_one(&dir).unwrap_err());
        assert!(err.contains("exports no plugin") && err.contains("export_plugin!("), "{err}");
        // Found anywhere under src/.
        std::fs::write(dir.join("src/inner/mod.rs"), "wasmsock_sdk::export_plugin!(super::P);\n").unwrap();
        assert!(mentions(&dir.join("src"), "export_plugin!"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
