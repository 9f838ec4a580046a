//! The READMEs' walkthroughs, run as written: README.md and the checkin, payment and trip
//! example READMEs are read, their commands run in bash against the real `dwell` binary
//! and their outputs compared with what the README shows, so the docs a new user reads
//! first cannot rot.
//! Long because it reads four READMEs and runs and compares every step of each.
//!
//! How a README is read (what its authors write for it):
//! - ```` ```sh ```` blocks run in order in one `bash` (`set -uo pipefail`), so shell
//!   variables carry over from block to block. A line starting with `$ ` is a command; it
//!   goes on for as long as the shell would wait for more (a trailing `\`, an open quote or
//!   bracket). The lines after it, up to a blank line or the next `$ `, are its output as a
//!   terminal shows it (stdout and stderr). In a block without `$ `, every line is a
//!   command whose output is not checked.
//! - Output matches when it is equal after blank lines and trailing spaces are dropped and
//!   a line that starts with a space is joined to the line before (so long JSON may be
//!   wrapped; `jq`'s indented output compares the same way); `...` matches any text.
//! - Every command exits 0, unless its output shows an error status (`"status":4..` or
//!   `"status":5..` of a problem document, or an `HTTP/1.1 4..`/`5..` status line).
//! - The working directory stands in for the repository root: `data/` is the server's
//!   data directory (so `data/default-tenant.key` is its key), `target/release/dwell` is
//!   the binary under test and `target/guests/` holds the built example modules; the CLI
//!   finds the server through `DWELL_URL`.
//! - A command starting with `scripts/` is not run. `scripts/dev.sh` is the server: the
//!   test starts `dwell serve` itself with a fresh data directory, counter, checkin,
//!   payment and trip deployed, and the flags written on the README's `scripts/dev.sh`
//!   lines. The other scripts build and test (this test among them).
//! - A ```` ```python ```` block is a file, written to the working directory under the
//!   last `<name>.py` in backticks in the prose before it ("save as `passes.py`"). A
//!   command that starts it in the background (`python3 passes.py &`) is followed by a
//!   wait until the ports in that file accept connections. A ```` ```text ```` block
//!   after prose that names a `.py` file is what that program has printed so far.
//! - Ports: `8080` is the server's port and `9000`, `9001` are the fake services'; the
//!   test rewrites them everywhere in the README to free loopback ports.
//! - Each command has [`COMMAND_TIMEOUT`]; at the end (or on a failure) the bash and every
//!   process it started are killed with its process group, and the server is killed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::harness::{Server, guest, workspace_root};

/// The longest one command may take (the check-in walkthrough waits for a timer).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a background service may take to listen.
const SERVICE_START: Duration = Duration::from_secs(20);
/// The modules `scripts/dev.sh` deploys.
const MODULES: &[&str] = &["counter", "checkin", "payment", "trip"];
/// The ports a README uses: Dwell's, then the fake services'.
const DWELL_PORT: &str = "8080";
const SERVICE_PORTS: &[&str] = &["9000", "9001"];

#[test]
fn the_readme_walkthrough_runs_as_written() {
    walk("README.md");
}

#[test]
fn the_checkin_walkthrough_runs_as_written() {
    walk("examples/checkin/README.md");
}

#[test]
fn the_payment_walkthrough_runs_as_written() {
    walk("examples/payment/README.md");
}

#[test]
fn the_trip_walkthrough_runs_as_written() {
    walk("examples/trip/README.md");
}

/// One step of a README, in order.
enum Step {
    /// A file to write into the working directory.
    File { name: String, text: String },
    /// A shell command; `expected` is `None` where its output is not checked.
    Command {
        line: usize,
        text: String,
        expected: Option<String>,
    },
    /// What a program started in the background has printed so far.
    Printed {
        line: usize,
        program: String,
        expected: String,
    },
}

/// A README read into steps, plus the flags of its `scripts/dev.sh` lines.
struct Readme {
    steps: Vec<Step>,
    serve_args: Vec<String>,
}

fn walk(readme: &str) {
    let text = std::fs::read_to_string(workspace_root().join(readme))
        .unwrap_or_else(|e| panic!("read {readme}: {e}"));
    let mut ports = HashMap::new();
    for port in SERVICE_PORTS {
        ports.insert(port.to_string(), free_port().to_string());
    }
    let parsed = parse(readme, &text);
    assert!(
        parsed.steps.iter().any(|s| matches!(
            s,
            Step::Command {
                expected: Some(_),
                ..
            }
        )),
        "{readme} has no command with an expected output: nothing would be checked"
    );

    let mut args = Vec::new();
    for m in MODULES {
        args.push("--deploy".to_owned());
        args.push(format!("{m}={}", guest(m).display()));
    }
    args.extend(parsed.serve_args.iter().map(|a| rewrite(a, &ports)));
    let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let port = server
        .base
        .rsplit(':')
        .next()
        .expect("the server's address has a port")
        .to_owned();
    ports.insert(DWELL_PORT.to_owned(), port);

    let dir = server
        .data
        .parent()
        .expect("the data directory has a parent")
        .to_path_buf();
    std::fs::create_dir_all(dir.join("target/release")).expect("target/release");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_dwell"),
        dir.join("target/release/dwell"),
    )
    .expect("link target/release/dwell");
    std::os::unix::fs::symlink(
        workspace_root().join("target/guests"),
        dir.join("target/guests"),
    )
    .expect("link target/guests");

    let mut session = Session::start(readme, &dir, &server, ports.clone());
    for step in &parsed.steps {
        match step {
            Step::File { name, text } => session.write(name, text),
            Step::Command {
                line,
                text,
                expected,
            } => session.run(
                *line,
                &rewrite(text, &ports),
                expected.as_ref().map(|e| rewrite(e, &ports)).as_deref(),
            ),
            Step::Printed {
                line,
                program,
                expected,
            } => session.printed(*line, program, &rewrite(expected, &ports)),
        }
    }
}

/// A free loopback port: bound, read and released (the service binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `text` with every port number of `ports` (a whole number, not part of a longer one)
/// replaced.
fn rewrite(text: &str, ports: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            let number = &rest[..digits];
            out.push_str(ports.get(number).map_or(number, String::as_str));
            rest = &rest[digits..];
        } else {
            let other = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            out.push_str(&rest[..other]);
            rest = &rest[other..];
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Reading a README

fn parse(readme: &str, text: &str) -> Readme {
    let lines: Vec<&str> = text.lines().collect();
    let mut steps = Vec::new();
    let mut serve_args = Vec::new();
    let mut prose = String::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].strip_prefix("```") else {
            prose.push_str(lines[i]);
            prose.push('\n');
            i += 1;
            continue;
        };
        let start = i + 1; // first line of the body, 0-based
        let end = (start..lines.len())
            .find(|&j| lines[j].starts_with("```"))
            .unwrap_or_else(|| panic!("{readme}:{}: a fenced block that never ends", i + 1));
        let body = &lines[start..end];
        match lang.trim() {
            "sh" => {
                for step in shell_block(readme, start, body) {
                    match &step {
                        Step::Command { text, .. } if text.starts_with("scripts/") => {
                            if let Some(flags) = text.strip_prefix("scripts/dev.sh") {
                                let flags = flags.split('#').next().unwrap_or_default();
                                serve_args.extend(flags.split_whitespace().map(str::to_owned));
                            }
                        }
                        _ => steps.push(step),
                    }
                }
            }
            "python" => {
                let name = named_program(&prose).unwrap_or_else(|| {
                    panic!("{readme}:{start}: a python block without a `<name>.py` before it")
                });
                steps.push(Step::File {
                    name,
                    text: body.iter().map(|l| format!("{l}\n")).collect(),
                });
            }
            "text" => {
                if let Some(program) = named_program(&prose) {
                    steps.push(Step::Printed {
                        line: start + 1,
                        program,
                        expected: body.join("\n"),
                    });
                }
            }
            _ => {} // diagrams, JSON shown for reading
        }
        prose.clear();
        i = end + 1;
    }
    Readme { steps, serve_args }
}

/// The last `<name>.py` in backticks in `prose`.
fn named_program(prose: &str) -> Option<String> {
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|code| code.ends_with(".py") && !code.contains(char::is_whitespace))
        .last()
        .map(str::to_owned)
}

/// The commands of a ```` ```sh ```` block whose body starts at 0-based line `start`.
fn shell_block(readme: &str, start: usize, body: &[&str]) -> Vec<Step> {
    let prompted = body.iter().any(|l| l.starts_with("$ "));
    let mut steps = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let line = body[i];
        if line.trim().is_empty() || (!prompted && line.trim_start().starts_with('#')) {
            i += 1;
            continue;
        }
        let first = if prompted {
            line.strip_prefix("$ ").unwrap_or_else(|| {
                panic!(
                    "{readme}:{}: output without a command before it: {line}",
                    start + i + 1
                )
            })
        } else {
            line
        };
        let number = start + i + 1;
        let mut text = first.to_owned();
        i += 1;
        while i < body.len() && incomplete(&text) {
            text.push('\n');
            text.push_str(body[i]);
            i += 1;
        }
        let expected = prompted.then(|| {
            let from = i;
            while i < body.len() && !body[i].trim().is_empty() && !body[i].starts_with("$ ") {
                i += 1;
            }
            body[from..i].join("\n")
        });
        steps.push(Step::Command {
            line: number,
            text,
            expected,
        });
    }
    steps
}

/// Whether the shell would wait for more after `command`: a trailing `\`, or a quote,
/// bracket or compound command still open (asked of `bash -n`).
fn incomplete(command: &str) -> bool {
    if command.ends_with('\\') {
        return true;
    }
    let status = Command::new("bash")
        .args(["--noprofile", "--norc", "-n", "-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run bash -n");
    !status.success()
}

// ---------------------------------------------------------------------------------------
// Running it

/// One bash in its own process group, fed one command at a time.
struct Session {
    readme: String,
    dir: PathBuf,
    bash: Child,
    stdin: ChildStdin,
    /// `<exit status> <$!>` after each command.
    done: Receiver<String>,
    /// README port → the port used here.
    ports: HashMap<String, String>,
    /// The files written so far, by name, as the README shows them (before the ports
    /// were rewritten).
    files: HashMap<String, String>,
    /// `$!` after the last command: a new value means a new background program.
    last_background: String,
    /// Where each program started in the background writes its output.
    programs: HashMap<String, PathBuf>,
    server_log: PathBuf,
    commands: usize,
    stopped: bool,
}

/// What a failed step shows.
struct Failure<'a> {
    line: usize,
    why: String,
    command: &'a str,
    expected: Option<&'a str>,
    /// The file holding what the step printed.
    output: &'a Path,
}

impl Session {
    fn start(readme: &str, dir: &Path, server: &Server, ports: HashMap<String, String>) -> Self {
        let outputs = dir.join(".walk");
        std::fs::create_dir_all(&outputs).expect("output directory");
        let shell_log = std::fs::File::create(outputs.join("bash.log")).expect("bash log");
        let mut bash = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(dir)
            .env("DWELL_URL", &server.base)
            .env_remove("DWELL_KEY")
            .env_remove("DWELL_ADMIN_KEY")
            .env_remove("DWELL_DATA")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(shell_log))
            .process_group(0)
            .spawn()
            .expect("start bash");
        let stdin = bash.stdin.take().expect("bash stdin");
        let stdout = bash.stdout.take().expect("bash stdout");
        let (tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("__walk ") {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        let mut session = Session {
            readme: readme.to_owned(),
            dir: dir.to_path_buf(),
            bash,
            stdin,
            done,
            ports,
            files: HashMap::new(),
            last_background: String::new(),
            programs: HashMap::new(),
            server_log: server.data.with_extension("log"),
            commands: 0,
            stopped: false,
        };
        session.send("set -uo pipefail\necho '__walk 0'\n");
        session
            .done
            .recv_timeout(Duration::from_secs(10))
            .expect("bash answers");
        session
    }

    fn send(&mut self, script: &str) {
        self.stdin
            .write_all(script.as_bytes())
            .and_then(|()| self.stdin.flush())
            .expect("write to bash");
    }

    /// Write a file of the README into the working directory.
    fn write(&mut self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), rewrite(text, &self.ports))
            .unwrap_or_else(|e| panic!("write {name}: {e}"));
        self.files.insert(name.to_owned(), text.to_owned());
    }

    /// Run one command (ports already rewritten), check its exit status and, if given,
    /// its output.
    fn run(&mut self, line: usize, command: &str, expected: Option<&str>) {
        self.commands += 1;
        let output = self.dir.join(format!(".walk/{}.out", self.commands));
        let failure = |why: String| Failure {
            line,
            why,
            command,
            expected,
            output: &output,
        };
        // A group in this shell (not a subshell), so assignments and `$!` persist; stdin
        // is /dev/null so that no command eats the rest of the script.
        self.send(&format!(
            "{{\n{command}\n}} >'{}' 2>&1 </dev/null; echo \"__walk $? ${{!:-}}\"\n",
            output.display()
        ));
        let report = match self.done.recv_timeout(COMMAND_TIMEOUT) {
            Ok(report) => report,
            Err(RecvTimeoutError::Timeout) => self.fail(failure(format!(
                "the command did not finish within {COMMAND_TIMEOUT:?}"
            ))),
            Err(RecvTimeoutError::Disconnected) => {
                self.fail(failure("bash exited during the command".into()))
            }
        };
        let mut report = report.split_whitespace();
        let status: i32 = report
            .next()
            .and_then(|s| s.parse().ok())
            .expect("an exit status");
        if status != 0 && !expected.is_some_and(shows_error_status) {
            self.fail(failure(format!("the command exited with status {status}")));
        }
        if let Some(expected) = expected {
            let actual = std::fs::read_to_string(&output).unwrap_or_default();
            if !output_matches(expected, &actual) {
                self.fail(failure("the command printed something else".into()));
            }
        }
        let background = report.next().unwrap_or_default();
        if background != self.last_background {
            self.last_background = background.to_owned();
            self.started(line, command, &output);
        }
    }

    /// `command` started a program in the background: remember where its output goes
    /// and wait until the ports in its file listen.
    fn started(&mut self, line: usize, command: &str, output: &Path) {
        let program = command
            .split_whitespace()
            .find(|w| w.ends_with(".py"))
            .unwrap_or_else(|| {
                panic!(
                    "{}:{line}: a background command that starts no `.py` file: {command}",
                    self.readme
                )
            })
            .to_owned();
        self.programs.insert(program.clone(), output.to_path_buf());
        let text = self.files.get(&program).cloned().unwrap_or_default();
        let listens: Vec<u16> = SERVICE_PORTS
            .iter()
            .filter(|p| text.split(|c: char| !c.is_ascii_digit()).any(|n| n == **p))
            .map(|p| self.ports[*p].parse().expect("a port"))
            .collect();
        for port in listens {
            let deadline = Instant::now() + SERVICE_START;
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    self.fail(Failure {
                        line,
                        why: format!("{program} did not listen on port {port}"),
                        command,
                        expected: None,
                        output,
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Check what a program started in the background has printed so far.
    fn printed(&mut self, line: usize, program: &str, expected: &str) {
        let Some(output) = self.programs.get(program).cloned() else {
            panic!(
                "{}:{line}: shows the output of {program}, which no command started",
                self.readme
            );
        };
        let actual = std::fs::read_to_string(&output).unwrap_or_default();
        if !output_matches(expected, &actual) {
            self.fail(Failure {
                line,
                why: format!("{program} printed something else"),
                command: "",
                expected: Some(expected),
                output: &output,
            });
        }
    }

    /// Stop everything and fail the test, showing the step, what bash and the background
    /// programs printed, and the server's log.
    fn fail(&mut self, f: Failure) -> ! {
        self.stop();
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        let mut programs = String::new();
        for (name, file) in &self.programs {
            programs.push_str(&format!("--- {name} printed:\n{}\n", read(file)));
        }
        panic!(
            "{}:{}: {}.\n--- command:\n{}\n--- expected:\n{}\n--- actual:\n{}\n\
             --- bash:\n{}\n{programs}--- server log:\n{}",
            self.readme,
            f.line,
            f.why,
            f.command,
            f.expected.unwrap_or("(not checked)"),
            read(f.output),
            read(&self.dir.join(".walk/bash.log")),
            read(&self.server_log),
        );
    }

    /// Kill bash and everything it started: its process group, which this test created
    /// (bash is not reaped before the kill, so the group id is still ours).
    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.bash.id())])
            .status();
        let _ = self.bash.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether expected output shows an error status (then the command may exit non-zero).
fn shows_error_status(expected: &str) -> bool {
    ["\"status\":4", "\"status\":5", "HTTP/1.1 4", "HTTP/1.1 5"]
        .iter()
        .any(|s| expected.contains(s))
}

/// `text` without blank lines and trailing spaces, a line that starts with a space joined
/// to the line before it.
fn normalize(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        match lines.last_mut() {
            Some(prev) if line.starts_with(char::is_whitespace) => prev.push_str(line.trim_start()),
            _ => lines.push(line.to_owned()),
        }
    }
    lines.join("\n")
}

/// Whether `actual` is what `expected` shows, `...` matching any text.
fn output_matches(expected: &str, actual: &str) -> bool {
    let (pattern, text) = (normalize(expected), normalize(actual));
    let parts: Vec<&str> = pattern.split("...").collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text; // no `...`
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[test]
fn output_matching_joins_wrapped_lines_and_treats_dots_as_a_wildcard() {
    assert!(output_matches(
        "{\"a\":1,\n \"b\":\"x...z\"}",
        "{\"a\":1,\"b\":\"xyz\"}\n"
    ));
    assert!(!output_matches("{\"a\":1}", "{\"a\":2}"));
    assert!(!output_matches("a...b", "a\nc"));
    assert!(output_matches("...", "anything\nat all"));
    assert!(!output_matches("x...x", "x"));
    let ports = HashMap::from([("9000".to_owned(), "41234".to_owned())]);
    assert_eq!(
        rewrite("127.0.0.1:9000 19000 90001 :9000/", &ports),
        "127.0.0.1:41234 19000 90001 :41234/"
    );
}

#[test]
fn reading_a_readme_finds_its_files_commands_outputs_and_server_flags() {
    let readme = r#"Save as `svc.py`:

```python
print("hi")
```

```sh
python3 svc.py &   # in the background
scripts/dev.sh --allow-http 127.0.0.1:9000 --allow-private-net
```

```sh
$ X=$(echo "a
  b")
$ echo one \
    two
one two
 (wrapped)
$ true

$ echo x
```

`svc.py` printed:

```text
hi
```

```json
{"shown": "for reading only"}
```
"#;
    let parsed = parse("test.md", readme);
    assert_eq!(
        parsed.serve_args,
        ["--allow-http", "127.0.0.1:9000", "--allow-private-net"]
    );
    let shown: Vec<String> = parsed
        .steps
        .iter()
        .map(|s| match s {
            Step::File { name, text } => format!("file {name}: {text}"),
            Step::Command {
                line,
                text,
                expected,
            } => format!("{line}: {text} => {expected:?}"),
            Step::Printed {
                line,
                program,
                expected,
            } => format!("{line}: {program} printed {expected}"),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "file svc.py: print(\"hi\")\n",
            "8: python3 svc.py &   # in the background => None",
            "13: X=$(echo \"a\n  b\") => Some(\"\")",
            "15: echo one \\\n    two => Some(\"one two\\n (wrapped)\")",
            "19: true => Some(\"\")",
            "21: echo x => Some(\"\")",
            "27: svc.py printed hi",
        ]
    );
}
