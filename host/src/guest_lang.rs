//! Plugins in JavaScript, TypeScript and Python: `wasmsock new NAME --lang js|ts|py` scaffolds a
//! project on the repository's SDK (`guest-sdk-js/`, `guest-sdk-py/`), and `wasmsock build`
//! builds one with the language's own tooling (componentize-js through the SDK's `wasmsock-js`,
//! componentize-py through `wasmsock_tool.py`). The result is checked and installed like a Rust
//! plugin by `build`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The language of a plugin project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate on the guest SDK (`guest-sdk/`).
    Rust,
    /// JavaScript (ES modules) on `guest-sdk-js/`.
    Js,
    /// TypeScript on `guest-sdk-js/` (type-checked at build).
    Ts,
    /// Python on `guest-sdk-py/` (componentize-py).
    Py,
}

fn repo_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// The JavaScript SDK a project uses: its own `node_modules/wasmsock-sdk`, else this build's.
fn js_sdk(project: &Path) -> PathBuf {
    let linked = project.join("node_modules").join("wasmsock-sdk");
    linked.canonicalize().unwrap_or_else(|_| repo_dir("guest-sdk-js"))
}

/// The Python SDK: `WASMSOCK_SDK_PY`, else this build's.
fn py_sdk() -> PathBuf {
    std::env::var_os("WASMSOCK_SDK_PY").map(PathBuf::from).unwrap_or_else(|| repo_dir("guest-sdk-py"))
}

/// The language of the project at `dir`, if it is a JavaScript or Python one.
pub fn detect(dir: &Path) -> Option<Lang> {
    if dir.join("Cargo.toml").is_file() {
        None
    } else if dir.join("package.json").is_file() {
        Some(Lang::Js)
    } else if dir.join("app.py").is_file() {
        Some(Lang::Py)
    } else {
        None
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {what} (is it installed?)"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Builds the JavaScript/TypeScript or Python project at `dir` into `dir/dist/NAME.wasm`.
pub fn build(dir: &Path, lang: Lang, name: &str) -> Result<PathBuf> {
    let out = dir.join("dist").join(format!("{name}.wasm"));
    match lang {
        Lang::Js | Lang::Ts => {
            if !dir.join("node_modules").is_dir() {
                run(Command::new("npm").args(["install", "--no-audit", "--no-fund"]).current_dir(dir), "npm install")?;
            }
            let sdk = js_sdk(dir);
            if !sdk.join("node_modules").is_dir() {
                // The SDK's own tools (componentize-js, jco, esbuild, typescript), as locked.
                run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&sdk), "npm ci (the SDK)")?;
            }
            let tool = sdk.join("bin").join("wasmsock-js.js");
            run(Command::new("node").arg(tool).arg("build").arg(dir).arg("-o").arg(&out), "wasmsock-js build")?;
        }
        Lang::Py => {
            let tool = py_sdk().join("wasmsock_tool.py");
            run(Command::new("python3").arg(tool).arg("build").arg(dir).arg("-o").arg(&out), "wasmsock_tool.py build")?;
        }
        Lang::Rust => bail!("{} is a Rust crate", dir.display()),
    }
    Ok(out)
}

/// The project's name: package.json's or pyproject.toml's `name`, else the directory's.
pub fn project_name(dir: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(dir.join("package.json")) {
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        return v["name"].as_str().map(|n| n.rsplit('/').next().unwrap_or(n).to_owned());
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("pyproject.toml")) {
        let t: toml::Table = toml::from_str(&text).ok()?;
        return t.get("project")?.get("name")?.as_str().map(str::to_owned);
    }
    dir.canonicalize().ok()?.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Writes a new JavaScript, TypeScript or Python echo plugin project into `dir`.
pub fn scaffold(dir: &Path, name: &str, lang: Lang, rel: impl Fn(&Path) -> PathBuf) -> Result<()> {
    let w = |p: &str, text: &str| {
        let path = dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    match lang {
        Lang::Js | Lang::Ts => {
            let sdk = repo_dir("guest-sdk-js").canonicalize().context("the JavaScript SDK (guest-sdk-js/)")?;
            let package = serde_json::json!({
                "name": name,
                "version": "0.1.0",
                "private": true,
                "type": "module",
                "scripts": { "build": "wasmsock-js build", "test": "wasmsock-js test" },
                "devDependencies": { "wasmsock-sdk": format!("file:{}", rel(&sdk).display()) },
            });
            w("package.json", &(serde_json::to_string_pretty(&package)? + "\n"))?;
            w(".gitignore", "/node_modules\n/dist\n")?;
            let ext = if lang == Lang::Ts { "ts" } else { "js" };
            w(&format!("src/plugin.{ext}"), JS_ECHO)?;
            w(&format!("test/plugin.test.{ext}"), &JS_TEST.replace("EXT", ext))?;
            if lang == Lang::Ts {
                w("tsconfig.json", TSCONFIG)?;
            }
            w("README.md", &readme(name, "npm install && npm test", "src/plugin.".to_owned() + ext))?;
        }
        Lang::Py => {
            let sdk = py_sdk().canonicalize().context("the Python SDK (guest-sdk-py/)")?;
            let tool = rel(&sdk).join("wasmsock_tool.py");
            w(
                "pyproject.toml",
                &format!("[project]\nname = \"{name}\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\n"),
            )?;
            w(".gitignore", "__pycache__/\n/build/\n/dist/\n")?;
            w("app.py", PY_ECHO)?;
            w("tests/test_app.py", PY_TEST)?;
            w("README.md", &readme(name, &format!("python3 {} test .", tool.display()), "app.py".into()))?;
        }
        Lang::Rust => bail!("Rust crates are made by the Rust scaffold"),
    }
    Ok(())
}

fn readme(name: &str, test: &str, source: String) -> String {
    format!(
        r#"# {name}

A [wasmsock](https://github.com/wasmsock/wasmsock) plugin (`{source}`), from `wasmsock new`.

```sh
{test}                                   # unit tests, without a server
wasmsock build --install path/to/plugins     # build a wasm component and install it: live at once
```

Serve it on a route: `wasmsock serve --plugins path/to/plugins --route /{name}={name}`.
"#
    )
}

const JS_ECHO: &str = r#"// Replies to every message with the same message.
import { definePlugin, Flow } from 'wasmsock-sdk';

export const handler = definePlugin({
  onMessage(conn, msg) {
    try {
      conn.send(msg);
    } catch {
      // A closed peer or a full queue is the host's to handle.
    }
    return Flow.done();
  },
});
"#;

const JS_TEST: &str = r#"import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Flow } from 'wasmsock-sdk';
import { TestHost } from 'wasmsock-sdk/testing';
import { handler } from '../src/plugin.EXT';

test('echoes', () => {
  const host = new TestHost();
  const conn = host.open('/echo');
  assert.deepEqual(host.message(handler, conn, 'hi'), Flow.done());
  assert.deepEqual(host.sent(conn).map((m) => m.text), ['hi']);
});
"#;

const TSCONFIG: &str = r#"{
  "compilerOptions": {
    "target": "es2022",
    "module": "es2022",
    "moduleResolution": "bundler",
    "strict": true,
    "noEmit": true,
    "types": []
  },
  "include": ["src"]
}
"#;

const PY_ECHO: &str = r#""""Replies to every message with the same message."""

from wasmsock_sdk import Flow, Plugin, WasmsockError, export


class Echo(Plugin):
    def on_message(self, conn, msg):
        try:
            conn.send(msg)
        except WasmsockError:
            pass  # a closed peer or a full queue is the host's to handle
        return Flow.done()


Handler = export(Echo)
"#;

const PY_TEST: &str = r#"import unittest

from app import Handler
from wasmsock_sdk import Flow
from wasmsock_sdk.testing import TestHost


class EchoTest(unittest.TestCase):
    def test_echoes(self):
        host = TestHost()
        conn = host.open("/echo")
        self.assertEqual(host.message(Handler, conn, "hi"), Flow.done())
        self.assertEqual(host.sent(conn), ["hi"])
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary one (removed when dropped).
    struct Work(PathBuf);
    impl Work {
        fn new(tag: &str) -> Work {
            let dir = std::env::temp_dir().join(format!("wasmsock-lang-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Work(dir)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Work {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn projects_are_told_apart_and_named() {
        let work = Work::new("detect");
        let js = work.path().join("a");
        std::fs::create_dir_all(&js).unwrap();
        std::fs::write(js.join("package.json"), r#"{"name": "@me/shout"}"#).unwrap();
        assert_eq!(detect(&js), Some(Lang::Js));
        assert_eq!(project_name(&js).as_deref(), Some("shout"));
        let py = work.path().join("b");
        std::fs::create_dir_all(&py).unwrap();
        std::fs::write(py.join("app.py"), "").unwrap();
        assert_eq!(detect(&py), Some(Lang::Py));
        assert_eq!(project_name(&py).as_deref(), Some("b"));
        std::fs::write(py.join("pyproject.toml"), "[project]\nname = \"whisper\"\n").unwrap();
        assert_eq!(project_name(&py).as_deref(), Some("whisper"));
        // A Rust crate stays Rust even with a package.json beside it (a crate with a web page).
        std::fs::write(js.join("Cargo.toml"), "").unwrap();
        assert_eq!(detect(&js), None);
    }

    #[test]
    fn every_language_scaffolds_its_files() {
        let work = Work::new("scaffold");
        for (lang, files) in [
            (Lang::Js, &["package.json", "src/plugin.js", "test/plugin.test.js", "README.md"][..]),
            (Lang::Ts, &["package.json", "src/plugin.ts", "test/plugin.test.ts", "tsconfig.json"][..]),
            (Lang::Py, &["pyproject.toml", "app.py", "tests/test_app.py", "README.md"][..]),
        ] {
            let dir = work.path().join(format!("{lang:?}"));
            std::fs::create_dir_all(&dir).unwrap();
            scaffold(&dir, "shout", lang, Path::to_path_buf).unwrap();
            for f in files {
                assert!(dir.join(f).is_file(), "{lang:?}: {f} missing");
            }
            assert_eq!(detect(&dir).map(|l| l == Lang::Py), Some(lang == Lang::Py));
        }
        let package = std::fs::read_to_string(work.path().join("Ts/package.json")).unwrap();
        assert!(package.contains("\"wasmsock-sdk\": \"file:/") && package.contains("guest-sdk-js"), "{package}");
    }
}
