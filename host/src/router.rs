//! Where a request goes: a WebSocket route (a path, its plugin chain, limits and origin
//! policy), a static file, or nowhere.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Builtin, HttpRouteSettings, RouteSettings};
use crate::origin::OriginPolicy;
use crate::plugin::{PluginSlot, Registry};
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
    routes: HashMap<String, Arc<Route>>,
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
        let routes = settings
            .iter()
            .map(|r| {
                let route = Route {
                    settings: Arc::new(r.clone()),
                    chain: r.plugins.iter().map(|p| registry.slot(p)).collect(),
                    builtin: r.builtin,
                };
                (r.path.clone(), Arc::new(route))
            })
            .collect();
        let mut http: Vec<Arc<HttpRoute>> = http.iter().map(|h| Arc::new(HttpRoute::new(h, registry))).collect();
        http.sort_by_key(|h| std::cmp::Reverse(h.settings.path.trim_end_matches('/').len()));
        Router { routes, http, files: static_dir.map(StaticFiles::new) }
    }

    /// Exact WebSocket routes first, then the HTTP route with the longest prefix covering the
    /// path; any other path is for the static files, if there are any.
    pub fn target(&self, path: &str) -> Target<'_> {
        if let Some(route) = self.routes.get(path) {
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
        self.routes.values()
    }
}
