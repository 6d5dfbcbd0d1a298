//! Routes: a path, the chain of plugins that serves it, and its limits and origin policy.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Limits, RouteSettings};
use crate::origin::OriginPolicy;
use crate::plugin::{PluginSlot, Registry};

#[derive(Debug)]
pub struct Route {
    pub path: String,
    pub chain: Vec<Arc<PluginSlot>>,
    pub builtin: Option<crate::config::Builtin>,
    pub limits: Limits,
    pub origins: OriginPolicy,
}

impl Route {
    /// True if `plugin` is in this route's chain: it may address the route's connections.
    pub fn serves(&self, plugin: &str) -> bool {
        self.chain.iter().any(|s| s.name() == plugin)
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

#[derive(Debug, Default)]
pub struct Router {
    routes: HashMap<String, Arc<Route>>,
}

impl Router {
    pub fn new(settings: &[RouteSettings], registry: &Registry) -> Router {
        let routes = settings
            .iter()
            .map(|r| {
                let route = Route {
                    path: r.path.clone(),
                    chain: r.plugins.iter().map(|p| registry.slot(p)).collect(),
                    builtin: r.builtin,
                    limits: r.limits.clone(),
                    origins: r.origins.clone(),
                };
                (r.path.clone(), Arc::new(route))
            })
            .collect();
        Router { routes }
    }

    pub fn get(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.get(path)
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.values()
    }
}
