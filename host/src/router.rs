//! Where a request goes: a WebSocket route (a path or path pattern, its plugin chain, limits
//! and origin policy), an HTTP route, a static file, or nowhere.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Builtin, HttpRouteSettings, RouteSettings};
use crate::origin::OriginPolicy;
use crate::plugin::{PluginSlot, Registry};
use crate::route_path::{Pattern, RoutePath};
use crate::static_files::StaticFiles;

#[derive(Debug)]
pub(crate) struct Route {
    /// The route's settings; connections keep them (limits, which plugins may address them).
    pub settings: Arc<RouteSettings>,
    pub chain: Vec<Arc<PluginSlot>>,
    pub builtin: Option<Builtin>,
}

impl Route {
    pub fn path(&self) -> &str {
        &self.settings.path
    }

    pub fn origins(&self) -> &OriginPolicy {
        &self.settings.origins
    }

    /// Names of the chain, for logs.
    pub fn chain_names(&self) -> Vec<&str> {
        self.chain.iter().map(|s| s.name()).collect()
    }

    /// The first plugin of the chain that is not loaded, if any.
    pub fn missing_plugin(&self) -> Option<&str> {
        self.chain.iter().find(|s| !s.is_loaded()).map(|s| s.name())
    }
}

/// A plain HTTP route: its plugin, and the bound on its requests in flight.
pub(crate) struct HttpRoute {
    pub settings: HttpRouteSettings,
    pub slot: Arc<PluginSlot>,
    /// One permit per request in flight (`max_concurrent`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// What the plugin's calls see as the route of the connection (plugin calls are made for a
    /// connection: an HTTP connection is one the hub does not list, addressed by no one).
    pub conn_route: Arc<RouteSettings>,
}

impl HttpRoute {
    pub fn new(settings: &HttpRouteSettings, registry: &Registry) -> HttpRoute {
        let conn_route = RouteSettings {
            path: settings.path.clone(),
            plugins: vec![settings.plugin.clone()],
            builtin: None,
            origins: OriginPolicy::new(&[], &[], true).expect("an empty origin policy is valid"),
            limits: Default::default(),
            compression: crate::ws::deflate::Config {
                enabled: false,
                context_takeover: false,
                window_bits: 15,
                min_size: 0,
                level: 1,
            },
        };
        HttpRoute {
            settings: settings.clone(),
            slot: registry.slot(&settings.plugin),
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_concurrent)),
            conn_route: Arc::new(conn_route),
        }
    }

    pub fn path(&self) -> &str {
        &self.settings.path
    }
}

/// What serves a request path.
pub(crate) enum Target<'a> {
    WebSocket(&'a Arc<Route>),
    /// A plain HTTP route whose prefix covers the path.
    Http(&'a Arc<HttpRoute>),
    /// A file of the `[static]` directory.
    File(&'a StaticFiles),
    NotFound,
}

#[derive(Default)]
pub(crate) struct Router {
    /// Routes whose path has no `{name}` segment.
    routes: HashMap<String, Arc<Route>>,
    /// The others, most specific first (see `route_path`).
    patterns: Vec<(Pattern, Arc<Route>)>,
    /// Longest prefix first.
    http: Vec<Arc<HttpRoute>>,
    files: Option<StaticFiles>,
}

impl Router {
    pub fn new(
        settings: &[RouteSettings],
        http: &[HttpRouteSettings],
        registry: &Registry,
        static_dir: Option<PathBuf>,
    ) -> Router {
        let mut routes = HashMap::new();
        let mut patterns = Vec::new();
        for r in settings {
            let route = Arc::new(Route {
                settings: Arc::new(r.clone()),
                chain: r.plugins.iter().map(|p| registry.slot(p)).collect(),
                builtin: r.builtin,
            });
            // Paths were validated with the configuration; one that no longer parses would
            // have been refused there, so it cannot be reached here.
            match RoutePath::parse(&r.path) {
                Ok(RoutePath::Pattern(p)) => patterns.push((p, route)),
                Ok(RoutePath::Exact(path)) => {
                    routes.insert(path, route);
                }
                Err(e) => tracing::error!(route = %r.path, error = %e, "route left out"),
            }
        }
        patterns.sort_by_key(|(p, _)| p.precedence());
        let mut http: Vec<Arc<HttpRoute>> = http.iter().map(|h| Arc::new(HttpRoute::new(h, registry))).collect();
        http.sort_by_key(|h| std::cmp::Reverse(h.settings.path.trim_end_matches('/').len()));
        Router { routes, patterns, http, files: static_dir.map(StaticFiles::new) }
    }

    /// Exact WebSocket routes first, then the most specific WebSocket pattern, then the HTTP
    /// route with the longest prefix covering the path; any other path is for the static
    /// files, if there are any.
    pub fn target(&self, path: &str) -> Target<'_> {
        if let Some(route) = self.routes.get(path) {
            return Target::WebSocket(route);
        }
        if let Some((_, route)) = self.patterns.iter().find(|(p, _)| p.matches(path)) {
            return Target::WebSocket(route);
        }
        if let Some(route) = self.http.iter().find(|h| h.settings.serves(path)) {
            return Target::Http(route);
        }
        match &self.files {
            Some(files) => Target::File(files),
            None => Target::NotFound,
        }
    }

    pub fn http_routes(&self) -> impl Iterator<Item = &Arc<HttpRoute>> {
        self.http.iter()
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.values().chain(self.patterns.iter().map(|(_, r)| r))
    }
}
