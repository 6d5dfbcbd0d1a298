//! The HTTP API (`/apps/{app_id}/...`), with Pusher's request signing.

use wasmsock_sdk::{HttpRequest, HttpResponse};

pub fn handle(req: &HttpRequest) -> HttpResponse {
    let _ = req;
    HttpResponse::text(501, "not yet") // TODO(pusher-api)
}
