//! Where a request goes: a WebSocket route (a path, its plugin chain, limits and origin
//! policy), a static file, or nowhere.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Builtin, RouteSettings};
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

/// What serves a request path.
pub(crate) enum Target<'a> {
    WebSocket(&'a Arc<Route>),
    /// A file of the `[static]` directory.
    File(&'a StaticFiles),
    NotFound,
}

#[derive(Default)]
pub(crate) struct Router {
    routes: HashMap<String, Arc<Route>>,
    files: Option<StaticFiles>,
}

impl Router {
    pub fn new(settings: &[RouteSettings], registry: &Registry, static_dir: Option<PathBuf>) -> Router {
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
        Router { routes, files: static_dir.map(StaticFiles::new) }
    }

    /// Exact routes first; any other path is for the static files, if there are any.
    pub fn target(&self, path: &str) -> Target<'_> {
        match (self.routes.get(path), &self.files) {
            (Some(route), _) => Target::WebSocket(route),
            (None, Some(files)) => Target::File(files),
            (None, None) => Target::NotFound,
        }
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.values()
    }
}
