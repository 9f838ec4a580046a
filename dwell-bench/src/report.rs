//! Results: the table's rows and the JSON each scenario adds (`Outcome`), the markdown
//! table, and the machine the bench ran on.

use serde_json::{Value, json};

pub(crate) struct Row {
    pub(crate) scenario: &'static str,
    metric: String,
    value: String,
    pub(crate) conditions: String,
}

#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) rows: Vec<Row>,
    pub(crate) json: serde_json::Map<String, Value>,
    pub(crate) problems: Vec<String>,
}

impl Outcome {
    pub(crate) fn row(
        &mut self,
        scenario: &'static str,
        metric: &str,
        value: String,
        conditions: &str,
    ) {
        self.rows.push(Row {
            scenario,
            metric: metric.to_owned(),
            value,
            conditions: conditions.to_owned(),
        });
    }

    pub(crate) fn set(&mut self, key: &str, v: Value) {
        self.json.insert(key.to_owned(), v);
    }
}

pub(crate) fn cpu_model() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    })
}

pub(crate) fn machine() -> Value {
    let cpu = cpu_model();
    let mem_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned());
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "memory_kb": mem_kb,
        "kernel": kernel,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

pub(crate) fn markdown(common: &str, rows: &[Row]) -> String {
    let mut s =
        format!("{common}\n\n| scenario | metric | result | conditions |\n|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.scenario, r.metric, r.value, r.conditions
        ));
    }
    s
}
