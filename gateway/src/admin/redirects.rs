//! The admin HTTP API of the ID archive: a thin adapter from HTTP to [`RedirectStore`], free of
//! Pingora types so tests can call it directly. The rules, the store and the row formats are
//! `idarchive`'s; this file decides paths, methods, bodies and statuses.
//!
//! Served on the admin listener only, under `/admin/redirects`:
//!
//! | method | path | does |
//! |---|---|---|
//! | `GET` | `/admin/redirects?prefix=P&limit=N` | lists retired identifiers (limit 100 by default, at most 10,000) |
//! | `GET` | `/admin/redirects/{id}` | the record and its history; 404 if not retired |
//! | `PUT` | `/admin/redirects/{id}` | body `{"target", "kind", "reason", "by"}`; `kind` is `moved` (default with a target), `temporary` or `gone` (no target) |
//! | `DELETE` | `/admin/redirects/{id}?reason=R&by=W` | un-retires the identifier; 404 if not retired |
//! | `POST` | `/admin/redirects/import?format=F&dry_run=1&by=W` | body: rows `old`, `new`, `kind`, `reason` as a JSON array of objects (`format=json`, the default), CSV with a header line (`format=csv`) or a YAML list (`format=yaml`), read by the same parsers as `iiif-gateway redirects import` |
//!
//! `{id}` is percent-encoded (a `/` in an identifier is `%2F`). Every call needs
//! `Authorization: Bearer <token>` (`gateway.admin.token`); with no token configured every call is
//! refused (403), so the API is off until someone sets one. Answers are JSON; errors are
//! `{"error": "…"}` with a 4xx status when the request is at fault: 400 (bad JSON, a rule
//! refused the edit, bad import rows, listed in `problems`), 401, 403, 404, 405, 409 (an import is
//! running or must be resumed with the CLI, or the records kept changing), 413 (body over [`MAX_EDIT_BODY`] or
//! [`MAX_IMPORT_BODY`]), and 503 when Redis fails.

use idarchive::formats::{self, RowProblem};
use idarchive::json::{change_json, record_json};
use idarchive::model::{Change, Edit, HistoryEntry, Kind, RuleError};
use idarchive::store::{ImportOptions, RedirectStore, StoreError};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::refuse_unauthenticated;
use super::AdminResponse;

/// The path prefix this API answers; the caller routes every path under it to [`handle`].
pub const PATH_PREFIX: &str = "/admin/redirects";

/// The largest `PUT` body accepted.
pub const MAX_EDIT_BODY: usize = 64 * 1024;

/// The largest import body accepted (about 400,000 rows); bigger imports use the CLI.
pub const MAX_IMPORT_BODY: usize = 32 * 1024 * 1024;

/// The most identifiers one list call returns.
const MAX_LIST: usize = 10_000;

/// Who edits when the request does not say.
const DEFAULT_BY: &str = "admin-api";

/// Whether `path` (without the query) belongs to this API.
pub fn handles(path: &str) -> bool {
    path == PATH_PREFIX || path.starts_with("/admin/redirects/")
}

/// The largest body worth reading for `path`: the caller reads at most this many bytes plus
/// one, and passes what it read; a longer body is answered 413 without being read whole.
pub fn body_limit(method: &str, path: &str) -> usize {
    if method == "POST" && path.split('?').next() == Some("/admin/redirects/import") {
        MAX_IMPORT_BODY
    } else {
        MAX_EDIT_BODY
    }
}

/// The answer to a request that is refused whatever its body (the API is off, the token is
/// missing or wrong, the path is not the API's, redirects are not configured); `None` when the
/// request gets as far as needing its body. The caller can call this before reading the body,
/// so that unauthenticated clients cannot make it read megabytes; [`handle`] calls it too.
pub fn refuse_early(
    store_configured: bool,
    token: Option<&str>,
    path_and_query: &str,
    authorization: Option<&str>,
) -> Option<AdminResponse> {
    if let Some(refusal) = refuse_unauthenticated(token, authorization) {
        return Some(refusal);
    }
    let path = path_and_query.split('?').next().unwrap_or("");
    if !handles(path) {
        return Some(AdminResponse::error(404, "not found"));
    }
    if !store_configured {
        return Some(AdminResponse::error(
            404,
            "redirects are not configured on this gateway (gateway.redirects)",
        ));
    }
    None
}

/// Answers one request to the API.
///
/// `store` is `None` when `gateway.redirects` is not configured; `token` is the configured
/// bearer token; `path_and_query` is the raw request target (still percent-encoded);
/// `authorization` is the `Authorization` header.
pub async fn handle(
    store: Option<&RedirectStore>,
    token: Option<&str>,
    method: &str,
    path_and_query: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> AdminResponse {
    let store = match (
        refuse_early(store.is_some(), token, path_and_query, authorization),
        store,
    ) {
        (Some(refusal), _) => return refusal,
        (None, Some(store)) => store,
        // `refuse_early` refuses every request when there is no store.
        (None, None) => return AdminResponse::error(404, "redirects are not configured"),
    };
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if body.len() > body_limit(method, path) {
        return AdminResponse::error(
            413,
            format!(
                "the body is larger than {} bytes{}",
                body_limit(method, path),
                if method == "POST" {
                    "; import bigger files with `iiif-gateway redirects import`"
                } else {
                    ""
                }
            ),
        );
    }
    let query = Query::parse(query);
    if path == PATH_PREFIX {
        return match method {
            "GET" => list(store, &query).await,
            _ => AdminResponse::error(405, format!("{method} is not allowed here"))
                .with_header("Allow", "GET"),
        };
    }
    let raw_id = &path[PATH_PREFIX.len() + 1..];
    if method == "POST" {
        return if raw_id == "import" {
            import(store, &query, body).await
        } else {
            AdminResponse::error(405, "POST is only for /admin/redirects/import")
                .with_header("Allow", "GET, PUT, DELETE")
        };
    }
    let id = match percent_decode_str(raw_id).decode_utf8() {
        Ok(id) => id.into_owned(),
        Err(_) => {
            return AdminResponse::error(400, "the identifier is not UTF-8 once decoded");
        }
    };
    if id.is_empty() {
        return AdminResponse::error(404, "no identifier in the path (/admin/redirects/{id})");
    }
    match method {
        "GET" => show(store, &id).await,
        "PUT" => put(store, &id, body).await,
        "DELETE" => delete(store, &id, &query).await,
        _ => AdminResponse::error(405, format!("{method} is not allowed here"))
            .with_header("Allow", "GET, PUT, DELETE"),
    }
}

/// The query parameters this API reads.
#[derive(Default)]
struct Query {
    prefix: String,
    limit: Option<String>,
    dry_run: bool,
    by: Option<String>,
    reason: Option<String>,
    format: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Query {
        let mut out = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = value.replace('+', " ");
            let value = percent_decode_str(&value).decode_utf8_lossy().into_owned();
            match key {
                "prefix" => out.prefix = value,
                "limit" => out.limit = Some(value),
                "dry_run" => out.dry_run = matches!(value.as_str(), "" | "1" | "true" | "yes"),
                "by" => out.by = Some(value),
                "reason" => out.reason = Some(value),
                "format" => out.format = Some(value),
                _ => {}
            }
        }
        out
    }
}

/// Maps a store failure to its answer; the one place that decides these statuses.
fn store_error(error: &StoreError) -> AdminResponse {
    match error {
        StoreError::Rule(RuleError::NotRetired(_)) => AdminResponse::error(404, error),
        StoreError::Rule(_) => AdminResponse::error(400, error),
        StoreError::Contended(_)
        | StoreError::ImportRunning(_)
        | StoreError::ImportUnfinished(_) => AdminResponse::error(409, error),
        StoreError::Connect { .. }
        | StoreError::Redis { .. }
        | StoreError::ImportNotWritten(_)
        | StoreError::ImportInterrupted { .. } => {
            log::warn!("admin API: {error}");
            AdminResponse::error(503, error)
        }
        StoreError::Url { .. } | StoreError::Malformed { .. } | StoreError::Output(_) => {
            log::error!("admin API: {error}");
            AdminResponse::error(500, error)
        }
    }
}

async fn list(store: &RedirectStore, query: &Query) -> AdminResponse {
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_LIST).contains(&n) => n,
        Some(_) => {
            return AdminResponse::error(400, format!("limit must be 1 to {MAX_LIST}"));
        }
    };
    match store.list(&query.prefix, limit).await {
        Ok(records) => {
            let items: Vec<Value> = records.iter().map(|(id, r)| record_json(id, r)).collect();
            AdminResponse::json(200, &json!({ "redirects": items }))
        }
        Err(e) => store_error(&e),
    }
}

async fn show(store: &RedirectStore, id: &str) -> AdminResponse {
    match store.show(id).await {
        Ok((Some(record), history)) => {
            let mut value = record_json(id, &record);
            value["history"] = history_json(&history);
            AdminResponse::json(200, &value)
        }
        Ok((None, _)) => store_error(&StoreError::Rule(RuleError::NotRetired(id.into()))),
        Err(e) => store_error(&e),
    }
}

fn history_json(history: &[HistoryEntry]) -> Value {
    serde_json::to_value(history).expect("history serializes")
}

/// The body of a `PUT`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

async fn put(store: &RedirectStore, id: &str, body: &[u8]) -> AdminResponse {
    let body: PutBody = match serde_json::from_slice(body) {
        Ok(body) => body,
        Err(e) => {
            return AdminResponse::error(
                400,
                format!("body: {e}; expected {{\"target\", \"kind\", \"reason\", \"by\"}}"),
            )
        }
    };
    let kind = match body.kind.as_deref() {
        Some(kind) => match kind.parse::<Kind>() {
            Ok(kind) => kind,
            Err(e) => return AdminResponse::error(400, e),
        },
        None if body.target.is_some() => Kind::Moved,
        None => {
            return AdminResponse::error(
                400,
                "give a target, or kind \"gone\" to withdraw the identifier",
            )
        }
    };
    let edit = match Edit::from_parts(id, body.target.as_deref(), kind) {
        Ok(edit) => edit,
        Err(e) => return AdminResponse::error(400, e),
    };
    let by = body.by.as_deref().unwrap_or(DEFAULT_BY);
    let reason = body.reason.as_deref().unwrap_or("");
    match store.edit(&edit, by, reason).await {
        Ok(changes) => edited(store, id, &changes).await,
        Err(e) => store_error(&e),
    }
}

async fn delete(store: &RedirectStore, id: &str, query: &Query) -> AdminResponse {
    let by = query.by.as_deref().unwrap_or(DEFAULT_BY);
    let reason = query.reason.as_deref().unwrap_or("");
    match store.remove(id, by, reason).await {
        Ok(changes) => AdminResponse::json(
            200,
            &json!({ "removed": id, "changes": changes.iter().map(change_json).collect::<Vec<_>>() }),
        ),
        Err(e) => store_error(&e),
    }
}

/// The answer to a successful edit: the record as stored now, and every record that changed.
async fn edited(store: &RedirectStore, id: &str, changes: &[Change]) -> AdminResponse {
    let record = match changes.first().and_then(|c| c.after.as_ref()) {
        Some(record) if changes[0].id == id => Some(record.clone()),
        _ => match store.get(id).await {
            Ok(record) => record,
            Err(e) => return store_error(&e),
        },
    };
    let mut value = record.map_or(Value::Null, |r| record_json(id, &r));
    if let Value::Object(map) = &mut value {
        map.insert("unchanged".into(), Value::Bool(changes.is_empty()));
        map.insert(
            "changes".into(),
            Value::Array(changes.iter().map(change_json).collect()),
        );
    }
    AdminResponse::json(200, &value)
}

async fn import(store: &RedirectStore, query: &Query, body: &[u8]) -> AdminResponse {
    let parsed = match query.format.as_deref() {
        None | Some("json") => formats::parse_json(body),
        Some("csv") => formats::parse(formats::Format::Csv, body),
        Some("yaml") => formats::parse(formats::Format::Yaml, body),
        Some(other) => {
            return AdminResponse::error(
                400,
                format!("format must be json, csv or yaml, not {other:?}"),
            )
        }
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return AdminResponse::error(400, e),
    };
    let options = ImportOptions {
        // Rows that did not parse still get the other rows checked, but nothing written.
        dry_run: query.dry_run || !parsed.problems.is_empty(),
        by: query.by.clone().unwrap_or_else(|| DEFAULT_BY.into()),
    };
    let report = match store.import(&parsed.rows, &options, &mut |_| {}).await {
        Ok(report) => report,
        Err(e) => return store_error(&e),
    };
    let mut problems: Vec<RowProblem> = parsed.problems;
    problems.extend(report.problems.iter().cloned());
    problems.sort_by_key(|p| p.location);
    if !problems.is_empty() {
        let listed: Vec<Value> = problems
            .iter()
            .map(|p| json!({ "item": p.location.item, "error": p.message }))
            .collect();
        return AdminResponse::json(
            400,
            &json!({
                "error": format!("{} bad rows; nothing written", problems.len()),
                "problems": listed,
            }),
        );
    }
    let mut value = serde_json::to_value(&report).expect("reports serialize");
    value["dry_run"] = Value::Bool(query.dry_run);
    AdminResponse::json(200, &value)
}

#[cfg(test)]
mod tests {
    use stack::redis::Redis;

    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";
    const AUTH: Option<&str> = Some("Bearer 0123456789abcdef-token");

    fn body_json(response: &AdminResponse) -> Value {
        serde_json::from_slice(&response.body).unwrap()
    }

    #[test]
    fn early_refusals_need_no_body() {
        let refuse = |configured, token, path, auth| {
            refuse_early(configured, token, path, auth).map(|r| r.status)
        };
        assert_eq!(refuse(true, None, "/admin/redirects/a", AUTH), Some(403));
        assert_eq!(
            refuse(true, Some(TOKEN), "/admin/redirects/a", None),
            Some(401)
        );
        assert_eq!(
            refuse(false, Some(TOKEN), "/admin/redirects/a", AUTH),
            Some(404)
        );
        assert_eq!(refuse(true, Some(TOKEN), "/admin/other", AUTH), Some(404));
        assert_eq!(
            refuse(true, Some(TOKEN), "/admin/redirects/import?dry_run=1", AUTH),
            None
        );
    }

    #[test]
    fn paths_and_limits() {
        assert!(handles("/admin/redirects"));
        assert!(handles("/admin/redirects/a%2Fb"));
        assert!(!handles("/admin/redirectsx"));
        assert!(!handles("/metrics"));
        assert_eq!(
            body_limit("POST", "/admin/redirects/import?dry_run=1"),
            MAX_IMPORT_BODY
        );
        assert_eq!(body_limit("PUT", "/admin/redirects/import"), MAX_EDIT_BODY);
    }

    #[tokio::test]
    async fn auth_is_checked_before_anything_else() {
        // No token configured: 403 for everything, even without a store.
        let r = handle(None, None, "GET", "/admin/redirects/a", AUTH, b"").await;
        assert_eq!(r.status, 403);
        assert_eq!(r.content_type, "application/json");
        assert!(body_json(&r)["error"].as_str().unwrap().contains("token"));
        let r = handle(None, Some(TOKEN), "GET", "/admin/redirects/a", None, b"").await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.headers,
            vec![(
                "WWW-Authenticate",
                "Bearer realm=\"iiif-gateway admin\"".to_string()
            )]
        );
        let r = handle(
            None,
            Some(TOKEN),
            "GET",
            "/admin/redirects/a",
            Some("Bearer nope"),
            b"",
        )
        .await;
        assert_eq!(r.status, 401);
        // Right token, no redirects configured.
        let r = handle(None, Some(TOKEN), "GET", "/admin/redirects/a", AUTH, b"").await;
        assert_eq!(r.status, 404);
        assert!(body_json(&r)["error"]
            .as_str()
            .unwrap()
            .contains("not configured"));
    }

    #[tokio::test]
    async fn the_api_edits_the_archive() {
        let redis = Redis::new();
        let store = RedirectStore::connect(&redis.url(), "api:").await.unwrap();
        let call = |method: &'static str, path: String, body: Vec<u8>| {
            let store = &store;
            async move { handle(Some(store), Some(TOKEN), method, &path, AUTH, &body).await }
        };

        // PUT a redirect with a percent-encoded identifier.
        let r = call(
            "PUT",
            "/admin/redirects/ark%3A%2F1%2Fold".into(),
            br#"{"target": "ark:/1/new", "reason": "merged", "by": "alice"}"#.to_vec(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = body_json(&r);
        assert_eq!(v["id"], "ark:/1/old");
        assert_eq!(v["target"], "ark:/1/new");
        assert_eq!(v["kind"], "moved");
        assert_eq!(v["changed_by"], "alice");
        assert_eq!(v["unchanged"], false);

        // GET it back, with history.
        let r = call("GET", "/admin/redirects/ark%3A%2F1%2Fold".into(), vec![]).await;
        assert_eq!(r.status, 200);
        let v = body_json(&r);
        assert_eq!(v["reason"], "merged");
        assert_eq!(v["history"][0]["action"], "set");
        assert_eq!(v["history"][0]["by"], "alice");

        // A chain: b → ark:/1/old collapses.
        let r = call(
            "PUT",
            "/admin/redirects/b".into(),
            br#"{"target": "ark:/1/old", "kind": "temporary"}"#.to_vec(),
        )
        .await;
        let v = body_json(&r);
        assert_eq!(
            (v["target"].clone(), v["kind"].clone()),
            (json!("ark:/1/new"), json!("temporary"))
        );
        assert_eq!(v["changed_by"], "admin-api");

        // The list.
        let r = call(
            "GET",
            "/admin/redirects?prefix=ark%3A&limit=10".into(),
            vec![],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(body_json(&r)["redirects"].as_array().unwrap().len(), 1);
        let r = call("GET", "/admin/redirects?limit=0".into(), vec![]).await;
        assert_eq!(r.status, 400);

        // Rule errors are 400 with the rule's message.
        let r = call(
            "PUT",
            "/admin/redirects/c".into(),
            br#"{"target": "c"}"#.to_vec(),
        )
        .await;
        assert_eq!(r.status, 400);
        assert!(body_json(&r)["error"].as_str().unwrap().contains("itself"));
        let r = call(
            "PUT",
            "/admin/redirects/ark%3A%2F1%2Fnew".into(),
            br#"{"target": "b"}"#.to_vec(),
        )
        .await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
        assert!(body_json(&r)["error"].as_str().unwrap().contains("loop"));
        let r = call(
            "PUT",
            "/admin/redirects/c".into(),
            br#"{"target": "x", "kind": "gone"}"#.to_vec(),
        )
        .await;
        assert_eq!(r.status, 400);

        // Bad JSON, unknown fields, bad kinds: 400.
        for body in [
            &b"{"[..],
            br#"{"target": "x", "colour": 1}"#,
            br#"{"target": "x", "kind": "sideways"}"#,
            b"{}",
        ] {
            let r = call("PUT", "/admin/redirects/c".into(), body.to_vec()).await;
            assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
        }

        // Gone spreads.
        let r = call(
            "PUT",
            "/admin/redirects/ark%3A%2F1%2Fnew".into(),
            br#"{"kind": "gone", "reason": "withdrawn"}"#.to_vec(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(body_json(&r)["changes"].as_array().unwrap().len(), 3);
        assert_eq!(store.get("b").await.unwrap().unwrap().kind(), Kind::Gone);

        // DELETE, then 404s.
        let r = call(
            "DELETE",
            "/admin/redirects/b?reason=oops&by=bob".into(),
            vec![],
        )
        .await;
        assert_eq!(r.status, 200);
        let r = call("DELETE", "/admin/redirects/b".into(), vec![]).await;
        assert_eq!(r.status, 404);
        let r = call("GET", "/admin/redirects/b".into(), vec![]).await;
        assert_eq!(r.status, 404);
        let (_, history) = store.show("b").await.unwrap();
        assert_eq!(
            (history[0].by.as_str(), history[0].reason.as_str()),
            ("bob", "oops")
        );

        // Methods and sizes.
        let r = call("POST", "/admin/redirects/b".into(), vec![]).await;
        assert_eq!(r.status, 405);
        assert_eq!(r.headers, vec![("Allow", "GET, PUT, DELETE".to_string())]);
        let r = call("PATCH", "/admin/redirects/b".into(), vec![]).await;
        assert_eq!(r.status, 405);
        let r = call("DELETE", "/admin/redirects".into(), vec![]).await;
        assert_eq!(r.status, 405);
        let r = call(
            "PUT",
            "/admin/redirects/b".into(),
            vec![b' '; MAX_EDIT_BODY + 1],
        )
        .await;
        assert_eq!(r.status, 413);
        let r = call("GET", "/admin/redirects/%FF".into(), vec![]).await;
        assert_eq!(r.status, 400);

        // An import lock makes edits 409.
        let mut conn = redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::AsyncCommands::set(&mut conn, "api:import-lock", "x")
            .await
            .unwrap();
        let r = call(
            "PUT",
            "/admin/redirects/z".into(),
            br#"{"target": "y"}"#.to_vec(),
        )
        .await;
        assert_eq!(r.status, 409);
        let _: () = redis::AsyncCommands::del(&mut conn, "api:import-lock")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_api_imports_csv_and_yaml_with_the_cli_parsers() {
        let redis = Redis::new();
        let store = RedirectStore::connect(&redis.url(), "api-formats:")
            .await
            .unwrap();
        let import = |target: &'static str, body: &'static [u8]| {
            let store = &store;
            async move { handle(Some(store), Some(TOKEN), "POST", target, AUTH, body).await }
        };
        let csv = b"old,new,kind,reason\nold-1,new-1,moved,merged\nold-2,,gone,withdrawn\n";
        let r = import("/admin/redirects/import?format=csv&dry_run=1", csv).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(body_json(&r)["added"], json!(2));
        assert!(store.get("old-1").await.unwrap().is_none(), "a dry run");

        let yaml = b"- old: y-1\n  new: y-2\n  reason: renamed\n";
        let r = import("/admin/redirects/import?format=yaml", yaml).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            store.get("y-1").await.unwrap().unwrap().target(),
            Some("y-2")
        );

        // Row problems come back by item, as for JSON.
        let r = import("/admin/redirects/import?format=csv", b"old,new\nz,z\n").await;
        assert_eq!(r.status, 400);
        assert!(
            body_json(&r)["problems"].is_array(),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let r = import("/admin/redirects/import?format=xml", b"<x/>").await;
        assert_eq!(r.status, 400);
        assert!(body_json(&r)["error"]
            .as_str()
            .unwrap()
            .contains("json, csv or yaml"));
        let r = import("/admin/redirects/import?format=csv", b"nope\n").await;
        assert_eq!(r.status, 400, "a CSV without the header line");
    }

    #[tokio::test]
    async fn the_api_imports() {
        let redis = Redis::new();
        let store = RedirectStore::connect(&redis.url(), "api:").await.unwrap();
        let rows = br#"[{"old": "a", "new": "b"}, {"old": "b", "new": "c", "kind": "temporary"},
                        {"old": "g", "kind": "gone", "reason": "withdrawn"}]"#;
        let r = handle(
            Some(&store),
            Some(TOKEN),
            "POST",
            "/admin/redirects/import?dry_run=1",
            AUTH,
            rows,
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = body_json(&r);
        assert_eq!(
            (
                v["added"].clone(),
                v["written"].clone(),
                v["dry_run"].clone()
            ),
            (json!(3), json!(false), json!(true))
        );
        assert!(store.get("a").await.unwrap().is_none());

        let r = handle(
            Some(&store),
            Some(TOKEN),
            "POST",
            "/admin/redirects/import?by=carol",
            AUTH,
            rows,
        )
        .await;
        assert_eq!(r.status, 200);
        let v = body_json(&r);
        assert_eq!(
            (
                v["added"].clone(),
                v["collapsed"].clone(),
                v["written"].clone()
            ),
            (json!(3), json!(1), json!(true))
        );
        let a = store.get("a").await.unwrap().unwrap();
        assert_eq!(
            (a.target(), a.kind(), a.changed_by.as_str()),
            (Some("c"), Kind::Temporary, "carol")
        );

        // Bad rows: every one listed by item, nothing written.
        let bad = br#"[{"old": "x", "new": "y"}, {"old": "c", "new": "a"}, {"old": "q"}, {"old": "z", "new": "g"}]"#;
        let r = handle(
            Some(&store),
            Some(TOKEN),
            "POST",
            "/admin/redirects/import",
            AUTH,
            bad,
        )
        .await;
        assert_eq!(r.status, 400);
        let v = body_json(&r);
        let items: Vec<i64> = v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["item"].as_i64().unwrap())
            .collect();
        assert_eq!(items, vec![2, 3, 4], "{v}");
        assert!(store.get("x").await.unwrap().is_none());

        let r = handle(
            Some(&store),
            Some(TOKEN),
            "POST",
            "/admin/redirects/import",
            AUTH,
            b"{\"old\": 1}",
        )
        .await;
        assert_eq!(r.status, 400);
        let r = handle(
            Some(&store),
            Some(TOKEN),
            "POST",
            "/admin/redirects/import",
            AUTH,
            &vec![b' '; MAX_IMPORT_BODY + 1],
        )
        .await;
        assert_eq!(r.status, 413);
    }

    #[tokio::test]
    async fn a_dead_redis_is_503() {
        let redis = Redis::new();
        let store = RedirectStore::new(&redis.url(), "api:").unwrap();
        drop(redis);
        let r = handle(
            Some(&store),
            Some(TOKEN),
            "GET",
            "/admin/redirects/a",
            AUTH,
            b"",
        )
        .await;
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    }
}
