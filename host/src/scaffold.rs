//! `wasmsock new NAME [--template echo|auth|rooms|api]`: a ready plugin crate.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use crate::guest_lang::Lang;

/// The starting points `wasmsock new` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// Replies to every message (the smallest useful plugin).
    Echo,
    /// Checks a shared token at connect time and names the connection.
    Auth,
    /// Channels: subscribe, unsubscribe and publish over JSON.
    Rooms,
    /// A backend's way in, on an HTTP route: `POST /publish/ROOM` with an API key.
    Api,
}

/// The SDK this binary was built with (the repository's `guest-sdk/`).
fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("guest-sdk")
}

/// How the new crate at `crate_dir` names the SDK at `sdk` (both absolute): relative, as cargo
/// path dependencies usually are, when they live in the same tree (a repository, a home
/// directory), so that the tree can move; absolute when they share only the root.
fn dependency_path(crate_dir: &Path, sdk: &Path) -> PathBuf {
    let (a, b): (Vec<_>, Vec<_>) = (crate_dir.components().collect(), sdk.components().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common < 2 {
        return sdk.to_path_buf();
    }
    let mut rel = PathBuf::new();
    for _ in common..a.len() {
        rel.push("..");
    }
    rel.extend(&b[common..]);
    rel
}

/// Creates plugin project `name` in `parent` (default: the current directory): a Rust crate,
/// or a JavaScript, TypeScript or Python project (echo only; see `guest_lang`).
pub fn new_plugin(
    name: &str,
    template: Template,
    lang: Lang,
    parent: Option<&Path>,
    sdk: Option<&Path>,
) -> Result<PathBuf> {
    crate::config::validate_plugin_name(name)?;
    let dir = parent.unwrap_or(Path::new(".")).join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    if lang != Lang::Rust {
        if template != Template::Echo {
            bail!("--lang {lang:?} has the echo template only (see plugins/rooms-ts and plugins/rooms-py for rooms)");
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let here = dir.canonicalize().context("the new project's directory")?;
        crate::guest_lang::scaffold(&dir, name, lang, |sdk| dependency_path(&here, sdk))?;
        return Ok(dir);
    }
    let sdk = match sdk {
        Some(p) => p.to_path_buf(),
        None => default_sdk(),
    };
    let sdk =
        sdk.canonicalize().with_context(|| format!("the guest SDK is not at {} (pass --sdk PATH)", sdk.display()))?;
    let lib = name.replace('-', "_");
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("cannot create {}", dir.display()))?;
    let sdk = dependency_path(&dir.canonicalize().context("the new crate's directory")?, &sdk);
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

# A wasmsock plugin: a wasm component for wasm32-wasip2 (cdylib) that is also a normal library,
# so its tests run natively with `cargo test`.
[lib]
name = "{lib}"
crate-type = ["cdylib", "rlib"]

[dependencies]
wasmsock-sdk = {{ path = {sdk:?} }}
{extra_deps}
# Standalone: not part of any surrounding workspace.
[workspace]

[profile.release]
opt-level = "s"
lto = true
strip = true
"#,
        sdk = sdk.display().to_string(),
        extra_deps = match template {
            Template::Rooms => "serde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\n",
            Template::Api => "serde_json = \"1\"\n",
            _ => "",
        },
    );
    write(&dir.join("Cargo.toml"), &cargo)?;
    write(&dir.join("src/lib.rs"), &source(template, name))?;
    write(&dir.join(".gitignore"), "/target\n")?;
    write(&dir.join("README.md"), &readme(name, template))?;
    Ok(dir)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn readme(name: &str, template: Template) -> String {
    format!(
        r#"# {name}

A [wasmsock](https://github.com/wasmsock/wasmsock) plugin (from the `{template:?}` template).

```sh
cargo test                                   # unit tests, natively, with the SDK's test host
wasmsock build --install path/to/plugins     # build for wasm32-wasip2 and install: live at once
wasmsock check target/wasm32-wasip2/release/{lib}.wasm
```

{serve}
"#,
        lib = name.replace('-', "_"),
        serve = match template {
            Template::Api => format!(
                "Serve it on an HTTP route (`[[http_routes]] path = \"/{name}\"`, `plugin = \"{name}\"`) with its key\n\
                 (`[plugins.{name}.config] api_key = {{ env = \"MY_API_KEY\" }}`), then\n\
                 `curl -H \"X-API-Key: $MY_API_KEY\" -d '{{\"text\":\"hi\"}}' https://HOST/{name}/publish/news`.\n\
                 For Centrifugo's API (the `cent` client), start from the repository's `plugins/api` instead."
            ),
            _ => format!("Serve it on a route: `wasmsock serve --plugins path/to/plugins --route /{name}={name}`."),
        }
    )
}

fn source(template: Template, name: &str) -> String {
    let ty: String = name
        .split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    let ty = if ty.is_empty() || !ty.starts_with(|c: char| c.is_ascii_alphabetic()) { format!("P{ty}") } else { ty };
    let body = match template {
        Template::Echo => ECHO,
        Template::Auth => AUTH,
        Template::Rooms => ROOMS,
        Template::Api => API,
    };
    body.replace("PLUGIN", &ty)
}

const ECHO: &str = r##"//! Replies to every message with the same message.

use wasmsock_sdk::{Conn, Flow, Message, Plugin, export_plugin};

#[derive(Default)]
pub struct PLUGIN;

impl Plugin for PLUGIN {
    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        let _ = conn.send(msg);
        Flow::Done
    }
}

export_plugin!(PLUGIN);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmsock_sdk::testing::TestHost;

    #[test]
    fn echoes() {
        let host = TestHost::new();
        let conn = host.open("/echo");
        assert_eq!(host.message(&PLUGIN, conn, "hi".into()), Flow::Done);
        assert_eq!(host.sent(conn), vec![Message::from("hi")]);
    }
}
"##;

const AUTH: &str = r##"//! Admits connections that present the shared token from the host configuration
//! (`[plugins.NAME.config] token = { env = "MY_TOKEN" }`) as `?token=` or
//! `Authorization: Bearer`, naming them after `?user=`. Messages pass on to the next plugin.

use wasmsock_sdk::{Conn, Connect, Identity, Plugin, Request, export_plugin};

#[derive(Default)]
pub struct PLUGIN;

impl Plugin for PLUGIN {
    fn on_connect(&self, _conn: Conn, req: &Request) -> Connect {
        let Some(expected) = wasmsock_sdk::config("token") else {
            return Connect::reject(500, "no token configured");
        };
        let given = req
            .query_param("token")
            .or_else(|| req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).map(str::to_owned));
        match given {
            Some(t) if t == expected => {
                let user = req.query_param("user").unwrap_or_else(|| "anonymous".into());
                Connect::accept_as(Identity::new(user))
            }
            Some(_) => Connect::reject(401, "bad token"),
            None => Connect::reject(401, "missing token"),
        }
    }
}

export_plugin!(PLUGIN);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmsock_sdk::testing::TestHost;

    fn req(query: &str) -> Request {
        Request { route: "/x".into(), path: "/x".into(), query: query.into(), ..Request::default() }
    }

    #[test]
    fn checks_the_token() {
        let host = TestHost::new().config("token", "s3cret");
        let (_, ok) = host.connect(&PLUGIN, req("token=s3cret&user=ada"));
        assert_eq!(ok, Connect::accept_as(Identity::new("ada")));
        let (_, bad) = host.connect(&PLUGIN, req("token=nope"));
        assert_eq!(bad, Connect::reject(401, "bad token"));
        let (_, none) = host.connect(&PLUGIN, req(""));
        assert_eq!(none, Connect::reject(401, "missing token"));
    }
}
"##;

const ROOMS: &str = r##"//! Channels over JSON: `{"event":"subscribe","channel":"c"}`, `{"event":"unsubscribe",...}`
//! and `{"event":"publish","channel":"c","data":...}`, delivered to every member as
//! `{"event":"message","channel":"c","data":...,"from":...}`.

use serde::Deserialize;
use serde_json::json;
use wasmsock_sdk::{Conn, Flow, Message, Plugin, export_plugin, rooms};

#[derive(Default)]
pub struct PLUGIN;

#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Request {
    Subscribe { channel: String },
    Unsubscribe { channel: String },
    Publish { channel: String, data: serde_json::Value },
}

impl Plugin for PLUGIN {
    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        let reply = match msg.parse_json::<Request>() {
            Ok(Request::Subscribe { channel }) => match conn.join(&channel) {
                Ok(()) => json!({"event": "subscribed", "channel": channel}),
                Err(e) => json!({"event": "error", "reason": e.to_string()}),
            },
            Ok(Request::Unsubscribe { channel }) => {
                conn.leave(&channel);
                json!({"event": "unsubscribed", "channel": channel})
            }
            Ok(Request::Publish { channel, data }) => {
                let from = conn.identity().map_or_else(|| format!("conn-{}", conn.id()), |i| i.id);
                let out = json!({"event": "message", "channel": channel, "data": data, "from": from});
                match Message::json(&out).map(|m| rooms::publish(&channel, m, None)) {
                    Ok(Ok(_)) => return Flow::Done,
                    Ok(Err(e)) | Err(e) => json!({"event": "error", "reason": e.to_string()}),
                }
            }
            Err(e) => json!({"event": "error", "reason": e.to_string()}),
        };
        let _ = conn.send_json(&reply);
        Flow::Done
    }
}

export_plugin!(PLUGIN);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmsock_sdk::testing::TestHost;

    #[test]
    fn members_receive_publishes() {
        let host = TestHost::new();
        let (a, b) = (host.open("/rooms"), host.open("/rooms"));
        for c in [a, b] {
            host.message(&PLUGIN, c, r#"{"event":"subscribe","channel":"news"}"#.into());
            host.sent(c);
        }
        host.message(&PLUGIN, a, r#"{"event":"publish","channel":"news","data":"hi"}"#.into());
        let got: serde_json::Value = host.sent(b)[0].parse_json().unwrap();
        assert_eq!(got["data"], "hi");
    }
}
"##;

const API: &str = r##"//! A backend's way in, on an HTTP route: `POST <route>/publish/ROOM` with the header
//! `X-API-Key` publishes the body (JSON) to room ROOM and answers how many members got it.
//! The key comes from the host configuration (`[plugins.NAME.config] api_key = { env = "..." }`).

use serde_json::json;
use wasmsock_sdk::{HttpRequest, HttpResponse, Message, Plugin, export_plugin, rooms};

#[derive(Default)]
pub struct PLUGIN;

impl Plugin for PLUGIN {
    fn on_request(&self, req: &HttpRequest) -> HttpResponse {
        let Some(expected) = wasmsock_sdk::config("api_key") else {
            return HttpResponse::text(503, "no api_key configured");
        };
        let given = req.header("x-api-key").unwrap_or_default();
        if !same(given.as_bytes(), expected.as_bytes()) {
            return HttpResponse::text(401, "bad or missing X-API-Key");
        }
        let room = match (req.method.as_str(), req.subpath().strip_prefix("/publish/")) {
            ("POST", Some(room)) if !room.is_empty() => room,
            _ => return HttpResponse::text(404, "try POST /publish/ROOM"),
        };
        let data: serde_json::Value = match req.json() {
            Ok(v) => v,
            Err(e) => return HttpResponse::text(400, &format!("the body is not JSON: {e}")),
        };
        let out = json!({"event": "message", "channel": room, "data": data});
        match Message::json(&out).map(|m| rooms::publish(room, m, None)) {
            Ok(Ok(n)) => HttpResponse::json(200, &json!({"delivered": n})),
            Ok(Err(e)) | Err(e) => HttpResponse::text(500, &e.to_string()),
        }
    }
}

/// Equal bytes, compared in time that depends on their lengths only, so a wrong key's
/// answer time does not tell how much of it was right.
fn same(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(!e) ^ e);
    }
    diff == 0
}

export_plugin!(PLUGIN);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmsock_sdk::testing::TestHost;

    fn post(path: &str, key: &str, body: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            route: "/api".into(),
            path: format!("/api{path}"),
            headers: vec![("x-api-key".into(), key.into())],
            body: body.into(),
            ..HttpRequest::default()
        }
    }

    #[test]
    fn publishes_with_the_key_only() {
        let host = TestHost::new().config("api_key", "k3y");
        let member = host.open("/rooms");
        member.join("news").unwrap();
        assert_eq!(host.request(&PLUGIN, post("/publish/news", "nope", "1")).status, 401);
        assert_eq!(host.request(&PLUGIN, post("/publish/news", "k3y", "{")).status, 400);
        let r = host.request(&PLUGIN, post("/publish/news", "k3y", r#"{"id":7}"#));
        assert_eq!(r.status, 200);
        let got: serde_json::Value = host.sent(member)[0].parse_json().unwrap();
        assert_eq!(got["data"]["id"], 7);
    }
}
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_is_named_relative_within_a_tree_and_absolute_across_trees() {
        let p = |s: &str| Path::new(s).to_path_buf();
        assert_eq!(
            dependency_path(&p("/home/u/repo/plugins/shout"), &p("/home/u/repo/guest-sdk")),
            p("../../guest-sdk")
        );
        assert_eq!(dependency_path(&p("/home/u/repo/shout"), &p("/home/u/repo/guest-sdk")), p("../guest-sdk"));
        assert_eq!(dependency_path(&p("/tmp/shout"), &p("/work/repo/guest-sdk")), p("/work/repo/guest-sdk"));
    }
}
