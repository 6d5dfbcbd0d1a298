//! The connect-proxy plugin against a real backend: a Python standard-library HTTP server
//! that accepts one user, refuses another, and is then stopped (down).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::*;

const BACKEND: &str = r#"
import json
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        ask = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        cookie = ask.get("headers", {}).get("cookie", "")
        if "session=alice" in cookie:
            status, body = 200, {"user": "alice", "claims": {"role": "admin", "via": ask.get("route")}}
        elif "session=bob" in cookie:
            status, body = 403, {"reason": "bob is banned"}
        else:
            status, body = 401, {"reason": "no session"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_port, flush=True)
server.serve_forever()
"#;

struct Python(Child);

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The backend and its port, or `None` without python3.
fn backend() -> Option<(Python, u16)> {
    let child = Command::new("python3").args(["-c", BACKEND]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn();
    let Ok(mut child) = child else {
        skip_without("python3");
        return None;
    };
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("backend printed {line:?}"));
    Some((Python(child), port))
}

async fn connect_with_cookie(s: &TestServer, cookie: &str) -> Result<Ws, (u16, String)> {
    let mut req = s.url("/app").into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    match s.connect_request(req).await {
        Ok(ws) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("unexpected handshake failure: {e}"),
    }
}

#[tokio::test]
async fn the_backend_accepts_names_and_refuses_and_a_down_backend_refuses_with_503() {
    let Some((python, port)) = backend() else { return };
    let toml = format!(
        "[[routes]]\npath = \"/app\"\nplugins = [\"proxy\", \"probe\"]\n\
         [plugins.proxy]\nhttp_allowed_hosts = [\"http://127.0.0.1:{port}\"]\nhttp_timeout = \"2s\"\n\
         [plugins.proxy.config]\nconnect_url = \"http://127.0.0.1:{port}/connect\"\n"
    );
    let s = Setup::new(&toml).plugin("proxy", "proxy").plugin("probe", "probe").start().await;

    let mut alice = connect_with_cookie(&s, "theme=dark; session=alice").await.expect("alice is accepted");
    send(&mut alice, "whoami").await;
    assert_eq!(recv_text(&mut alice).await, "alice");
    assert_eq!(connect_with_cookie(&s, "session=bob").await.err(), Some((403, "bob is banned".into())));
    assert_eq!(connect_with_cookie(&s, "theme=dark").await.err(), Some((401, "no session".into())));

    drop(python);
    let refused = connect_with_cookie(&s, "session=alice").await.err();
    assert_eq!(refused, Some((503, "authentication backend unavailable".into())));
    // Alice's connection, accepted earlier, is unaffected.
    send(&mut alice, "whoami").await;
    assert_eq!(recv_text(&mut alice).await, "alice");
    assert_eq!(s.metric("wasmsock_plugin_http_requests_total{plugin=\"proxy\"}").await, 4.0);
    assert_eq!(s.metric("wasmsock_plugin_http_errors_total{plugin=\"proxy\",kind=\"connect\"}").await, 1.0);
}
