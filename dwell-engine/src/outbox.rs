//! The outbox worker: performs deliveries that turns and settled requests left in the
//! durable outbox — guests' HTTP calls and request callbacks — after their commit.
//!
//! Each attempt's outcome is committed before the next step (retry with backoff, or the
//! final result), so a crash at any point repeats at most one attempt: delivery is
//! at-least-once, and every attempt carries the same idempotency key (`Idempotency-Key`
//! for HTTP calls, `webhook-id` for callbacks) so receivers can de-duplicate.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::domain::{ActorId, Envelope, MessageKind, RequestId, RequestStatus, TenantId};
use crate::store::{CallbackStatus, Delivery, OutboxEntry, OutboxUpdate};

use super::Inner;
use super::outbound::{self, Attempt, ReadBody};

pub(super) async fn run(inner: Arc<Inner>) {
    let inflight: Arc<Mutex<HashSet<u128>>> = Arc::default();
    let concurrency = inner.config.outbound.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    // Fair per tenant, like turns: one tenant's deliveries (to a receiver that hangs,
    // say) hold at most its share of the node's outbound slots.
    let share = (concurrency / 4).max(1);
    let mut shares: HashMap<Option<TenantId>, Arc<Semaphore>> = HashMap::new();
    loop {
        let now = inner.clock.now_ms();
        let due = match inner.store.outbox_due(now, 1024) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        inner.metrics.outbox_due.set(due.len() as i64);
        for (id, entry) in due {
            // Read once: who it is for decides where it is made and whose share it takes.
            let actor = actor_of(&inner, &entry);
            // A cluster node makes only its own actors' deliveries.
            if let Some(p) = &inner.config.placement
                && !actor.as_ref().is_some_and(|a| p.local(a))
            {
                continue;
            }
            if inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id)
            {
                continue;
            }
            let tenant_share = shares
                .entry(actor.map(|a| a.tenant))
                .or_insert_with(|| Arc::new(Semaphore::new(share)))
                .clone();
            // Its tenant's share is in use: it waits for the next round.
            let Ok(tenant_permit) = tenant_share.try_acquire_owned() else {
                continue;
            };
            // The node's slots are all in use: wait for a delivery to finish.
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id);
            inner.metrics.outbox_in_flight.inc();
            let inner2 = inner.clone();
            let inflight = inflight.clone();
            tokio::spawn(async move {
                deliver(&inner2, id, entry).await;
                inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                inner2.metrics.outbox_in_flight.dec();
                drop((permit, tenant_permit));
                inner2.outbox_wake.notify_one();
            });
        }
        // Forget the shares of tenants with nothing in flight.
        shares.retain(|_, s| s.available_permits() < share);
        match inner.store.next_outbox_due() {
            Ok(Some(due)) if due > now => {
                tokio::select! {
                    _ = inner.clock.sleep_until(due) => {}
                    _ = inner.outbox_wake.notified() => {}
                }
            }
            // Due but in flight or waiting for a share: a finished delivery wakes us.
            _ => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = inner.outbox_wake.notified() => {}
                }
            }
        }
    }
}

/// The actor a delivery is made for (a callback: the actor of its request; `None` if
/// it cannot be told).
fn actor_of(inner: &Inner, entry: &OutboxEntry) -> Option<ActorId> {
    match &entry.delivery {
        Delivery::Http { actor, .. } => Some(actor.clone()),
        Delivery::Callback { request, .. } => {
            Some(inner.store.request(RequestId(*request)).ok()??.actor)
        }
    }
}

async fn deliver(inner: &Arc<Inner>, id: u128, entry: OutboxEntry) {
    let update = match &entry.delivery {
        // A deleted tenant's calls stop (its actors are being purged).
        Delivery::Http { actor, .. } if inner.tenants.get(&actor.tenant).is_none() => {
            Some(OutboxUpdate::Finish {
                result: None,
                callback: None,
            })
        }
        Delivery::Http { actor, spec } => http_call(inner, id, &entry, actor, spec).await,
        Delivery::Callback {
            request,
            url,
            trace,
        } => callback(inner, &entry, *request, url, *trace).await,
    };
    let Some(update) = update else { return };
    count_attempt(inner, &update);
    if let Err(e) = inner.store.outbox_update(id, update).await {
        tracing::error!(error = %e, "cannot record an outbox delivery; it will be retried");
    }
}

/// Count an attempt by what it leads to. Nothing was attempted for a delivery dropped
/// unsent (its tenant or request is gone).
fn count_attempt(inner: &Inner, update: &OutboxUpdate) {
    let m = &inner.metrics;
    match update {
        OutboxUpdate::Retry { .. } => m.outbox_attempts_retry.inc(),
        OutboxUpdate::Finish {
            result: None,
            callback: None,
        } => return,
        OutboxUpdate::Finish {
            callback: Some(CallbackStatus::GaveUp { .. }),
            ..
        } => m.outbox_attempts_failed.inc(),
        OutboxUpdate::Finish {
            result: Some(envelope),
            ..
        } if matches!(
            &envelope.kind,
            MessageKind::HttpResult {
                outcome: Err(_),
                ..
            }
        ) =>
        {
            m.outbox_attempts_failed.inc()
        }
        OutboxUpdate::Finish { .. } => m.outbox_attempts_ok.inc(),
    };
}

async fn http_call(
    inner: &Arc<Inner>,
    id: u128,
    entry: &OutboxEntry,
    actor: &ActorId,
    spec: &crate::domain::HttpCallSpec,
) -> Option<OutboxUpdate> {
    let cfg = &inner.config.outbound;
    let attempt_no = entry.attempts + 1;
    let max = match spec.max_attempts {
        0 => cfg.default_attempts,
        n => n.min(20),
    };
    let timeout = match spec.timeout_ms {
        0 => cfg.default_timeout,
        ms => Duration::from_millis(ms.min(120_000) as u64),
    };
    let finish = |outcome| OutboxUpdate::Finish {
        result: Some(Envelope {
            kind: MessageKind::HttpResult {
                call_id: spec.call_id.clone(),
                outcome,
            },
            body: Vec::new(),
            enqueued_ms: inner.clock.now_ms(),
            // The result's turn continues the trace of the turn that made the call.
            trace: spec.trace,
        }),
        callback: None,
    };
    let tenant = Some(actor.tenant.clone());
    let tenant_allow = tenant
        .as_ref()
        .and_then(|t| inner.tenants.get(t))
        .map(|t| t.record.allow_http.clone())
        .unwrap_or_default();
    let (platform, url, allow_private) = (
        cfg.allow.clone(),
        spec.url.clone(),
        inner.config.allow_private_net,
    );
    let checked = tokio::task::spawn_blocking(move || {
        outbound::check_destination(&platform, &tenant_allow, &url, allow_private, true)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(refused) = checked {
        return Some(finish(Err(refused)));
    }
    let mut headers = spec.headers.clone();
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("idempotency-key"))
    {
        headers.push(("idempotency-key".into(), format!("dwell-{id:032x}")));
    }
    // The call continues the trace of the turn that made it (a guest's own
    // `traceparent` is replaced: the host owns the trace context).
    let span = spec.trace.map(|parent| {
        let own = parent.child(&[b"http", spec.call_id.as_bytes(), &attempt_no.to_be_bytes()]);
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("traceparent"));
        headers.push(("traceparent".to_owned(), own.header()));
        (parent, own)
    });
    let started = std::time::Instant::now();
    let (method, url, body, read, http) = (
        spec.method.clone(),
        spec.url.clone(),
        spec.body.clone(),
        ReadBody::Keep(cfg.max_response),
        inner.http.clone(),
    );
    let result = tokio::task::spawn_blocking(move || {
        http.attempt(&method, &url, &headers, &body, timeout, read)
    })
    .await
    .unwrap_or_else(|e| Attempt::Failed(e.to_string()));
    tracing::debug!(%actor, call = %spec.call_id, attempt = attempt_no, ?result, "outbound attempt");
    if let Some((parent, own)) = span {
        exchange_span(
            format!("{} {}", spec.method, host_of(&spec.url)),
            parent,
            own,
            started.elapsed(),
            &spec.url,
            attempt_no,
            &result,
        );
    }
    if result.retryable() && attempt_no < max {
        let (wait, error) = match &result {
            Attempt::Response(r, retry_after) => (
                retry_after.unwrap_or_else(|| outbound::backoff(cfg, attempt_no)),
                format!("HTTP {}", r.status),
            ),
            Attempt::Failed(e) => (outbound::backoff(cfg, attempt_no), e.clone()),
        };
        return Some(OutboxUpdate::Retry {
            due: inner.clock.now_ms() + wait.as_millis() as u64,
            error,
        });
    }
    Some(finish(match result {
        Attempt::Response(r, _) => Ok(r),
        Attempt::Failed(e) => Err(format!("{e} (after {attempt_no} attempts)")),
    }))
}

async fn callback(
    inner: &Arc<Inner>,
    entry: &OutboxEntry,
    request: u128,
    url: &str,
    trace: Option<dwell_types::TraceParent>,
) -> Option<OutboxUpdate> {
    let cfg = &inner.config.outbound;
    let attempt_no = entry.attempts + 1;
    let id = RequestId(request);
    let rec = match inner.store.request(id) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Some(OutboxUpdate::Finish {
                result: None,
                callback: None,
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read a request for its callback");
            return None;
        }
    };
    let actor = Some(rec.actor.clone());
    // A deleted tenant's callbacks stop: nothing is sent, nothing signed with a secret
    // that is not the tenant's.
    let Some(tenant) = actor.as_ref().and_then(|a| inner.tenants.get(&a.tenant)) else {
        return Some(OutboxUpdate::Finish {
            result: None,
            callback: Some(CallbackStatus::GaveUp {
                attempts: entry.attempts,
                error: "the tenant was deleted".to_owned(),
            }),
        });
    };
    let secret = tenant.record.webhook_secret.clone();
    let tenant_allow = tenant.record.allow_http.clone();
    let mut body = serde_json::json!({
        "request_id": id.to_string(),
        "actor": actor.map(|a| serde_json::json!({"module": a.module, "key": a.key})),
    });
    match &rec.status {
        RequestStatus::Completed { reply } => {
            body["status"] = "completed".into();
            body["reply"] = crate::domain::msgpack_to_json(reply);
        }
        RequestStatus::Failed { error, refusal } => {
            body["status"] = "failed".into();
            body["error"] = error.clone().into();
            if let Some(code) = refusal {
                body["refusal"] = code.as_str().into();
            }
        }
        RequestStatus::Pending => return None,
    }
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let msg_id = format!("msg_{id}");
    let ts = inner.clock.now_ms() / 1000;
    let (platform, dest, allow_private) = (
        cfg.allow.clone(),
        url.to_owned(),
        inner.config.allow_private_net,
    );
    let checked = tokio::task::spawn_blocking(move || {
        outbound::check_destination(&platform, &tenant_allow, &dest, allow_private, true)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    // The callback continues the trace of the call it answers.
    let span = trace.map(|parent| {
        let own = parent.child(&[
            b"callback",
            &request.to_be_bytes(),
            &attempt_no.to_be_bytes(),
        ]);
        (parent, own)
    });
    let started = std::time::Instant::now();
    let outcome = match (checked, outbound::sign(&secret, &msg_id, ts, &body)) {
        (Err(e), _) | (_, Err(e)) => Attempt::Failed(e),
        (Ok(()), Ok(signature)) => {
            let mut headers = vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("webhook-id".to_owned(), msg_id),
                ("webhook-timestamp".to_owned(), ts.to_string()),
                ("webhook-signature".to_owned(), signature),
            ];
            if let Some((_, own)) = span {
                headers.push(("traceparent".to_owned(), own.header()));
            }
            let (url, timeout, http) = (url.to_owned(), cfg.default_timeout, inner.http.clone());
            // Success is the status alone; the receiver's body is skimmed and dropped.
            tokio::task::spawn_blocking(move || {
                http.attempt(
                    "POST",
                    &url,
                    &headers,
                    &body,
                    timeout,
                    ReadBody::Skim(64 << 10),
                )
            })
            .await
            .unwrap_or_else(|e| Attempt::Failed(e.to_string()))
        }
    };
    if let Some((parent, own)) = span {
        exchange_span(
            format!("POST {} (callback)", host_of(url)),
            parent,
            own,
            started.elapsed(),
            url,
            attempt_no,
            &outcome,
        );
    }
    let error = match &outcome {
        Attempt::Response(r, _) if (200..300).contains(&r.status) => {
            return Some(OutboxUpdate::Finish {
                result: None,
                callback: Some(CallbackStatus::Delivered {
                    attempts: attempt_no,
                    at_ms: inner.clock.now_ms(),
                }),
            });
        }
        Attempt::Response(r, _) => format!("receiver answered HTTP {}", r.status),
        Attempt::Failed(e) => e.clone(),
    };
    if attempt_no >= cfg.callback_attempts {
        tracing::warn!(request = %id, %error, "callback given up");
        return Some(OutboxUpdate::Finish {
            result: None,
            callback: Some(CallbackStatus::GaveUp {
                attempts: attempt_no,
                error,
            }),
        });
    }
    let wait = match &outcome {
        Attempt::Response(_, Some(retry_after)) => *retry_after,
        _ => outbound::backoff(cfg, attempt_no),
    };
    Some(OutboxUpdate::Retry {
        due: inner.clock.now_ms() + wait.as_millis() as u64,
        error,
    })
}

/// `host[:port]` of a URL, for a span's name (never its path or query: they may carry
/// identifiers a trace store should not index).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// Export one outbound exchange (a guest's HTTP call or a callback) as a client span.
fn exchange_span(
    name: String,
    parent: dwell_types::TraceParent,
    own: dwell_types::TraceParent,
    took: Duration,
    url: &str,
    attempt: u32,
    result: &Attempt,
) {
    use crate::trace::{Attribute, Finished, Kind};
    if !crate::trace::enabled() {
        return;
    }
    let mut attributes = vec![
        Attribute::new("server.address", host_of(url).to_owned()),
        Attribute::new("dwell.attempt", i64::from(attempt)),
    ];
    let error = match result {
        Attempt::Response(r, _) => {
            attributes.push(Attribute::new(
                "http.response.status_code",
                i64::from(r.status),
            ));
            (r.status >= 400).then(|| format!("HTTP {}", r.status))
        }
        Attempt::Failed(e) => Some(e.clone()),
    };
    crate::trace::export(Finished {
        name,
        kind: Kind::Client,
        context: own,
        parent: Some(parent.span_id),
        took,
        attributes,
        error,
    });
}
