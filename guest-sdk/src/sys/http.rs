//! Outbound HTTP through the standard `wasi:http/outgoing-handler` (the host enforces the
//! plugin's policy in its send hook). Every "blocking" call here suspends the plugin's call on
//! the host, which serves other connections meanwhile.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

use crate::http_types::{Error, Request, Response, split_url};

/// Bytes per write of the request body (the most `blocking-write-and-flush` takes at once).
const WRITE_CHUNK: usize = 4096;
/// Bytes asked for per read of the answer's body.
const READ_CHUNK: u64 = 64 * 1024;

pub(crate) fn http_send(req: Request) -> Result<Response, Error> {
    let url = split_url(&req.url)?;
    let mut entries: Vec<(String, Vec<u8>)> =
        req.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec())).collect();
    let has_body = !req.body.is_empty() || matches!(req.method.as_str(), "POST" | "PUT" | "PATCH");
    if has_body && !entries.iter().any(|(n, _)| n == "content-length") {
        // A declared length, not chunked: simple backends (Python's http.server) read it.
        entries.push(("content-length".into(), req.body.len().to_string().into_bytes()));
    }
    let headers = Fields::from_list(&entries).map_err(|e| Error::InvalidHeader(format!("{e:?}")))?;
    let request = OutgoingRequest::new(headers);
    let method = match req.method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_owned()),
    };
    let invalid = |what: &str| Error::InvalidUrl(format!("{}: {what}", req.url));
    request.set_method(&method).map_err(|()| Error::Other(format!("bad method {}", req.method)))?;
    request.set_scheme(Some(if url.https { &Scheme::Https } else { &Scheme::Http })).map_err(|()| invalid("scheme"))?;
    request.set_authority(Some(url.authority)).map_err(|()| invalid("host"))?;
    let path = match url.path_and_query.starts_with('?') {
        true => format!("/{}", url.path_and_query),
        false => url.path_and_query.to_owned(),
    };
    request.set_path_with_query(Some(&path)).map_err(|()| invalid("path"))?;
    let body = if has_body { Some(request.body().map_err(|()| Error::Other("no request body".into()))?) } else { None };

    let future = outgoing_handler::handle(request, None).map_err(from_code)?;
    // Written after `handle`, so the host streams it out as it comes. A failure here usually
    // means the request already failed (denied, refused): its reason is what the plugin gets.
    let written = match body {
        Some(body) => write_body(body, &req.body),
        None => Ok(()),
    };
    let pollable = future.subscribe();
    pollable.block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(from_code(code)),
        Some(Err(())) | None => return Err(Error::Other("the answer was already taken".into())),
    };
    written?;
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = response.consume().map_err(|()| Error::Other("the answer's body was already taken".into()))?;
    let body = read_body(&incoming);
    drop(IncomingBody::finish(incoming));
    Ok(Response { status, headers, body: body? })
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), Error> {
    {
        let stream = body.write().map_err(|()| Error::Other("request body stream".into()))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(|e| from_stream(&e))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(from_code)
}

fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, Error> {
    let stream = incoming.stream().map_err(|()| Error::Other("the answer's body stream".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(body),
            Err(e) => return Err(from_stream(&e)),
        }
    }
}

fn from_stream(e: &StreamError) -> Error {
    match e {
        StreamError::Closed => Error::Other("connection closed".into()),
        StreamError::LastOperationFailed(err) => {
            if let Some(code) = wasip2::http::types::http_error_code(err) {
                return from_code(code);
            }
            // Errors of the body come from the host as text.
            let text = err.to_debug_string();
            if text.contains("body size") {
                Error::TooLarge
            } else if text.contains("timeout") {
                Error::Timeout
            } else {
                Error::Other(text)
            }
        }
    }
}

fn from_code(code: ErrorCode) -> Error {
    match code {
        ErrorCode::HttpRequestDenied => Error::Denied,
        ErrorCode::ConnectionLimitReached => Error::Busy,
        ErrorCode::DnsTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => Error::Timeout,
        ErrorCode::DnsError(_) => Error::Dns,
        ErrorCode::ConnectionRefused
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpProhibited
        | ErrorCode::DestinationIpUnroutable => Error::Unreachable,
        ErrorCode::TlsProtocolError | ErrorCode::TlsCertificateError | ErrorCode::TlsAlertReceived(_) => Error::Tls,
        ErrorCode::HttpResponseBodySize(_) => Error::TooLarge,
        ErrorCode::HttpRequestUriInvalid => Error::InvalidUrl("rejected by the host".into()),
        other => Error::Other(format!("{other:?}")),
    }
}
