//! Routes that match whatever the case of the service method.

use drpc::plugin::{RouteInfo, RouteKind};
use drpc::proto::Message;
use drpc::{Plugin, Session, Status};
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

/// Routes calls and pushes whatever the case of their service method:
/// `/Math/ADD` reaches the handler registered as `/math/add`.
///
/// It learns the routes as the endpoint registers them, and rewrites an
/// incoming service method to the registered spelling before routing, so
/// handlers and later plugins see the route's own name. Two routes of one
/// kind that differ only in case are ambiguous: building the endpoint fails.
///
/// ```
/// use drpc::{CallCtx, Endpoint, Router, Status};
/// use drpc_plugins::IgnoreCase;
///
/// let mut router = Router::new();
/// router.call("/math/add", |_: CallCtx, (a, b): (i64, i64)| async move {
///     Ok::<_, Status>(a + b)
/// }).unwrap();
/// let server = Endpoint::builder()
///     .router(router)
///     .plugin(IgnoreCase::default())
///     .build()
///     .unwrap();
/// # drop(server);
/// ```
#[derive(Debug, Default)]
pub struct IgnoreCase {
    calls: RwLock<Table>,
    pushes: RwLock<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Registered spellings: the common case, an exact match, costs no
    /// allocation.
    exact: HashSet<String>,
    /// Lowercased → registered.
    folded: HashMap<String, String>,
}

impl IgnoreCase {
    fn rewrite(table: &RwLock<Table>, msg: &mut Message) {
        let table = table.read().unwrap_or_else(|e| e.into_inner());
        let method: &str = &msg.header.service_method;
        if table.exact.contains(method) {
            return;
        }
        if let Some(registered) = table.folded.get(&method.to_lowercase()) {
            msg.header.service_method = registered.as_str().into();
        }
    }
}

impl Plugin for IgnoreCase {
    fn name(&self) -> &str {
        "ignore-case"
    }

    fn after_register(&self, route: RouteInfo<'_>) -> Result<(), Status> {
        let table = match route.kind {
            RouteKind::Call => &self.calls,
            RouteKind::Push => &self.pushes,
            // Fallbacks take whatever is left; nothing to fold.
            _ => return Ok(()),
        };
        let mut table = table.write().unwrap_or_else(|e| e.into_inner());
        let key = route.path.to_lowercase();
        if let Some(other) = table.folded.get(&key) {
            return Err(Status::internal(format!(
                "routes {other:?} and {:?} differ only in case, so IgnoreCase cannot tell them apart",
                route.path
            )));
        }
        table.folded.insert(key, route.path.to_string());
        table.exact.insert(route.path.to_string());
        Ok(())
    }

    fn after_read_call_header(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        Self::rewrite(&self.calls, msg);
        Ok(())
    }

    fn after_read_push_header(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        Self::rewrite(&self.pushes, msg);
        Ok(())
    }
}
