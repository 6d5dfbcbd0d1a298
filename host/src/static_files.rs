//! Static files for plain GET requests that match no WebSocket route (the chat example's page).

use std::path::{Component, Path, PathBuf};

use crate::http::{self, HttpRequest};

/// Largest file served (static assets of a demo page, not a CDN).
const MAX_FILE: u64 = 8 << 20;

pub struct StaticFiles {
    root: PathBuf,
    /// `root` with its links resolved (once), what a served file's real path must start with.
    real_root: PathBuf,
}

impl StaticFiles {
    pub fn new(root: PathBuf) -> StaticFiles {
        let real_root = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
        StaticFiles { root, real_root }
    }

    /// A response for `req`, or `None` to let the caller answer 404. The file is opened here
    /// and its body read in chunks as it is sent (through tokio's blocking pool, so a slow disk
    /// never stalls the connection tasks), never whole into memory.
    pub async fn respond(&self, req: &HttpRequest) -> Option<FileResponse> {
        if req.method != "GET" && req.method != "HEAD" {
            return None;
        }
        let path = self.resolve(&req.path)?;
        // A symlink inside the directory must not lead out of it, nor to a hidden file in it.
        let real = tokio::fs::canonicalize(&path).await.ok()?;
        let inside = real.strip_prefix(&self.real_root).ok()?;
        if inside.components().any(|c| !matches!(c, Component::Normal(n) if !is_hidden(n))) {
            return None;
        }
        let file = tokio::fs::File::open(&real).await.ok()?;
        let meta = file.metadata().await.ok()?;
        if !meta.is_file() || meta.len() > MAX_FILE {
            return None;
        }
        let len = meta.len();
        let head = http::response_head(200, &[("X-Content-Type-Options", "nosniff")], content_type(&path), len);
        let body = if req.method == "HEAD" { None } else { Some((file, len)) };
        Some(FileResponse { head, body })
    }

    /// Maps a URL path into the root, refusing anything that would leave it and hidden files
    /// and directories (`.env`, `.git/`): a path segment starting with a dot is not served.
    fn resolve(&self, url_path: &str) -> Option<PathBuf> {
        let rel = url_path.trim_start_matches('/');
        let rel = if rel.is_empty() || rel.ends_with('/') { format!("{rel}index.html") } else { rel.to_owned() };
        let rel = Path::new(&rel);
        if rel.components().any(|c| !matches!(c, Component::Normal(n) if !is_hidden(n))) {
            return None;
        }
        Some(self.root.join(rel))
    }
}

/// A response's head and, unless it answers a HEAD, the open file and how many bytes to send.
pub struct FileResponse {
    pub head: Vec<u8>,
    pub body: Option<(tokio::fs::File, u64)>,
}

/// Bytes read from a file per write.
pub const CHUNK: usize = 64 << 10;

fn is_hidden(segment: &std::ffi::OsStr) -> bool {
    segment.as_encoded_bytes().first() == Some(&b'.')
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_traversal() {
        let s = StaticFiles::new("/srv".into());
        assert_eq!(s.resolve("/"), Some(PathBuf::from("/srv/index.html")));
        assert_eq!(s.resolve("/a/b.js"), Some(PathBuf::from("/srv/a/b.js")));
        assert_eq!(s.resolve("/../etc/passwd"), None);
        assert_eq!(s.resolve("/a/../../x"), None);
        assert_eq!(s.resolve("/.env"), None);
        assert_eq!(s.resolve("/.git/config"), None);
        assert_eq!(s.resolve("/a/.hidden/b"), None);
        assert_eq!(s.resolve("/a.b/c.d"), Some(PathBuf::from("/srv/a.b/c.d")));
    }

    #[tokio::test]
    async fn symlinks_out_of_the_directory_are_not_followed() {
        let dir = std::env::temp_dir().join(format!("wasmsock-static-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("site")).unwrap();
        std::fs::write(dir.join("site/index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.join("secret.txt"), dir.join("site/leak.txt")).unwrap();
        std::os::unix::fs::symlink(dir.join("site/index.html"), dir.join("site/home.html")).unwrap();
        let files = StaticFiles::new(dir.join("site"));
        let get = |path: &str| HttpRequest {
            method: "GET".into(),
            version: 1,
            authority: None,
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
        };
        assert!(files.respond(&get("/")).await.is_some());
        assert!(files.respond(&get("/home.html")).await.is_some(), "a link within the directory");
        assert!(files.respond(&get("/leak.txt")).await.is_none(), "a link out of it");
        assert!(files.respond(&get("/missing.html")).await.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
