//! Tracing: a caller's W3C `traceparent` goes into the turn, on to the guest's outbound
//! HTTP call and to the request's callback; with `--otlp-endpoint` the node exports the
//! call, its turns, the outbound call and the callback as spans of that one trace to a
//! (fake, loopback) OTLP/HTTP collector, which decodes them as a collector would.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::{Value, json};

use crate::fake::{FakeService, Received, answer};
use crate::harness::Server;

const CALLER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// One exported span, as the collector decoded it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace: String,
    id: String,
    parent: String,
    kind: i32,
    attributes: HashMap<String, String>,
}

fn spans(collector: &FakeService) -> Vec<Span> {
    let mut out = Vec::new();
    for r in collector.received() {
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        let req = ExportTraceServiceRequest::decode(r.body.as_slice()).expect("OTLP protobuf");
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .map(|a| format!("{:?}", a.value));
            assert!(
                service.is_some_and(|s| s.contains("dwell")),
                "service.name is dwell"
            );
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let attributes = s
                        .attributes
                        .iter()
                        .map(|a| {
                            let v = a.value.as_ref().and_then(|v| v.value.as_ref());
                            let v = match v {
                                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => s.clone(),
                                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(i)) => i.to_string(),
                                other => format!("{other:?}"),
                            };
                            (a.key.clone(), v)
                        })
                        .collect();
                    out.push(Span {
                        name: s.name,
                        trace: hex(&s.trace_id),
                        id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        kind: s.kind,
                        attributes,
                    });
                }
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(trace id, parent id)` of a received `traceparent`.
fn traceparent(r: &Received) -> (String, String) {
    let tp = r.header("traceparent").expect("a traceparent header");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[3], "01", "sampled");
    (parts[1].to_owned(), parts[2].to_owned())
}

fn pay(server: &Server, key: &str, provider: &FakeService, headers: &[(&str, &str)]) -> Value {
    let open = server.call(
        "payment",
        key,
        json!({"type": "open", "customer": "c1", "credit": 0}),
    );
    assert_eq!(open.status, 200);
    let mut h = vec![("prefer", "wait=15")];
    h.extend_from_slice(headers);
    let r = server.post_json(
        &format!("/v1/actors/payment/{key}"),
        &json!({
            "type": "pay",
            "amount": 30,
            "card": "4111111111111111",
            "provider_url": format!("{}/charge", provider.url),
            "update_timeout_ms": 5000,
        }),
        &h,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[test]
fn one_trace_runs_from_the_call_through_its_turns_to_the_outbound_call_and_the_callback() {
    let collector = FakeService::start(|_, _| answer(200, ""));
    let provider = FakeService::start(|_, _| answer(200, r#"{"status":"approved"}"#));
    let hooks = FakeService::start(|_, _| answer(204, ""));
    let server = Server::start_with_env(
        &[
            "--allow-private-net",
            "--allow-http",
            &provider.host_port(),
            "--allow-http",
            &hooks.host_port(),
            "--otlp-endpoint",
            &collector.url,
        ],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    server.deploy("payment", "payment");
    let callback = format!("{}/hook", hooks.url);
    let reply = pay(
        &server,
        "p1",
        &provider,
        &[("traceparent", CALLER), ("callback-url", &callback)],
    );
    assert_eq!(reply["status"], "payment received");

    // The provider and the callback receiver saw the caller's trace.
    let charge = &provider.received()[0];
    let (trace, charge_parent) = traceparent(charge);
    assert_eq!(
        trace, TRACE_ID,
        "the outbound call continues the caller's trace"
    );
    let hook = server.eventually(Duration::from_secs(10), "the callback", || {
        hooks.received().first().cloned()
    });
    let (trace, hook_parent) = traceparent(&hook);
    assert_eq!(trace, TRACE_ID, "the callback continues the caller's trace");

    // The collector got the spans, linked: call → turn → outbound call → result's turn;
    // call → callback. The headers' parent ids are the exported client spans.
    let all = server.eventually(Duration::from_secs(15), "the trace's spans", || {
        let all: Vec<Span> = spans(&collector)
            .into_iter()
            .filter(|s| s.trace == TRACE_ID)
            .collect();
        let names = all.iter().filter(|s| s.name == "turn payment").count();
        let callback = all.iter().any(|s| s.name.ends_with("(callback)"));
        (names >= 2 && callback).then_some(all)
    });
    let by_id: HashMap<&str, &Span> = all.iter().map(|s| (s.id.as_str(), s)).collect();
    let call = all
        .iter()
        .find(|s| s.name == "POST /v1/actors/{module}/{key}")
        .expect("the call's server span");
    assert_eq!(call.parent, CALLER_SPAN, "under the caller's span");
    assert_eq!(call.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(call.attributes["http.response.status_code"], "200");

    let outbound = by_id
        .get(charge_parent.as_str())
        .expect("the provider's traceparent names an exported span");
    assert_eq!(outbound.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(outbound.name, format!("POST {}", provider.host_port()));
    assert_eq!(outbound.attributes["http.response.status_code"], "200");
    let pay_turn = by_id[outbound.parent.as_str()];
    assert_eq!(pay_turn.name, "turn payment");
    assert_eq!(pay_turn.attributes["dwell.actor"], "p1");
    assert_eq!(pay_turn.attributes["dwell.outcome"], "ok");
    assert_eq!(pay_turn.parent, call.id, "the turn runs under the call");
    // The turn that took the provider's answer is in the trace too, under the
    // turn that made the call.
    let result_turn = all
        .iter()
        .find(|s| s.name == "turn payment" && s.parent == pay_turn.id)
        .expect("the HTTP result's turn");
    assert_ne!(
        result_turn.attributes["dwell.seq"],
        pay_turn.attributes["dwell.seq"]
    );

    // The actor's history names each turn's trace and span: the ones exported.
    let history = server.get("/v1/actors/payment/p1/history").json();
    let items = history["items"].as_array().unwrap();
    let in_trace: Vec<&Value> = items.iter().filter(|t| t["trace_id"] == TRACE_ID).collect();
    assert_eq!(
        in_trace.len(),
        2,
        "the pay turn and the result's turn: {history:#}"
    );
    for t in &in_trace {
        let span = t["span_id"].as_str().unwrap();
        assert_eq!(by_id[span].name, "turn payment");
        assert_eq!(by_id[span].attributes["dwell.seq"], t["seq"].to_string());
    }
    assert!(
        items
            .iter()
            .any(|t| t["trace_id"].is_null() || t["trace_id"] != TRACE_ID),
        "the open call brought no trace of the caller's"
    );
    let hook_span = by_id
        .get(hook_parent.as_str())
        .expect("the callback's traceparent names an exported span");
    assert_eq!(hook_span.kind, 3);
    assert_eq!(hook_span.parent, call.id, "the callback answers the call");
    assert_eq!(hook_span.attributes["http.response.status_code"], "204");

    // A call without (or with a malformed) traceparent starts a trace of its own.
    pay(&server, "p2", &provider, &[("traceparent", "00-zz-1-01")]);
    let (trace, _) = traceparent(&provider.received()[1]);
    assert_ne!(trace, TRACE_ID);
    assert_eq!(trace.len(), 32);
    server.eventually(Duration::from_secs(15), "the new trace's spans", || {
        spans(&collector)
            .iter()
            .any(|s| s.trace == trace && s.name == "turn payment")
            .then_some(())
    });
}

#[test]
fn without_an_exporter_the_callers_trace_still_reaches_the_outbound_call() {
    let provider = FakeService::start(|_, _| answer(200, r#"{"status":"approved"}"#));
    let server = Server::start(&["--allow-private-net", "--allow-http", &provider.host_port()]);
    server.deploy("payment", "payment");
    pay(&server, "p1", &provider, &[("traceparent", CALLER)]);
    let (trace, parent) = traceparent(&provider.received()[0]);
    assert_eq!(trace, TRACE_ID);
    assert_ne!(
        parent, CALLER_SPAN,
        "a span of the node's own, under the caller's"
    );
    // No traceparent in, none out.
    pay(&server, "p2", &provider, &[]);
    assert_eq!(provider.received()[1].header("traceparent"), None);
}

#[test]
fn a_sample_ratio_of_zero_drops_the_nodes_own_traces_whole_and_keeps_the_callers() {
    let collector = FakeService::start(|_, _| answer(200, ""));
    let provider = FakeService::start(|_, _| answer(200, r#"{"status":"approved"}"#));
    let server = Server::start_with_env(
        &[
            "--allow-private-net",
            "--allow-http",
            &provider.host_port(),
            "--otlp-endpoint",
            &collector.url,
            "--otlp-sample-ratio",
            "0",
        ],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    server.deploy("payment", "payment");
    // The node's own trace is not sampled, and says so downstream (flags 00).
    pay(&server, "p1", &provider, &[]);
    let tp = provider.received()[0]
        .header("traceparent")
        .expect("a traceparent")
        .to_owned();
    assert!(
        tp.starts_with("00-") && tp.ends_with("-00"),
        "not sampled: {tp}"
    );
    let own_trace = tp.split('-').nth(1).unwrap().to_owned();
    // The caller's sampled trace is exported whatever the ratio.
    pay(&server, "p2", &provider, &[("traceparent", CALLER)]);
    assert_eq!(traceparent(&provider.received()[1]).0, TRACE_ID);
    server.eventually(Duration::from_secs(15), "the caller's spans", || {
        let all = spans(&collector);
        (all.iter().filter(|s| s.trace == TRACE_ID).count() >= 4).then_some(())
    });
    let traces: std::collections::BTreeSet<String> =
        spans(&collector).into_iter().map(|s| s.trace).collect();
    assert!(
        !traces.contains(&own_trace),
        "the unsampled trace was not exported"
    );
    assert_eq!(traces.len(), 1, "only the caller's trace: {traces:?}");
}
