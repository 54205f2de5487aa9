//! `cargo test` with its failures repeated at the very end, and how long
//! each test binary took.
//!
//! CI keeps only the tail of a run, and the fuzzers print thousands of lines
//! after the tests. Without this, a red run says "cargo test failed" and
//! nothing about which test or why.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

/// Lines of one test binary's "failures:" section (the captured output and
/// panic message of each failed test, then the list of their names).
#[derive(Default)]
struct Failures {
    sections: Vec<String>,
    current: Option<String>,
}

impl Failures {
    fn line(&mut self, line: &str) {
        if line == "failures:" && self.current.is_none() {
            self.current = Some(String::new());
        }
        if let Some(section) = self.current.as_mut() {
            section.push_str(line);
            section.push('\n');
            if line.starts_with("test result:") {
                self.sections.push(self.current.take().unwrap_or_default());
            }
        }
    }
}

/// The last stretch of a section is what tells the story (the names, the
/// result); a test that printed megabytes is cut from the front.
const KEEP: usize = 12_000;

/// Wall time per test binary: from cargo's "Running ..." line to the next
/// one (or the end), so a binary's start-up and teardown count too. Before
/// the first binary: building.
#[derive(Default)]
struct Timings {
    start: Option<Instant>,
    current: Option<(String, Instant)>,
    done: Vec<(String, Duration)>,
}

impl Timings {
    fn line(&mut self, line: &str, now: Instant) {
        let start = *self.start.get_or_insert(now);
        let Some(rest) = line.trim_start().strip_prefix("Running ") else { return };
        // "Running tests/netns.rs (target/debug/deps/netns-...)"
        let name = rest.split(" (").next().unwrap_or(rest).to_string();
        match self.current.replace((name, now)) {
            Some((prev, t)) => self.done.push((prev, now - t)),
            None => self.done.push(("building".into(), now - start)),
        }
    }

    fn end(mut self, now: Instant) -> Vec<(String, Duration)> {
        if let Some((prev, t)) = self.current.take() {
            self.done.push((prev, now - t));
        }
        self.done
    }
}

pub struct Outcome {
    result: Result<()>,
    failures: Vec<String>,
    timings: Vec<(String, Duration)>,
    tests: Vec<(String, Duration)>,
}

/// How many of the slowest tests `finish` names.
const SLOWEST: usize = 10;

/// Wall time per test: from its binary's "running N tests" or the test
/// before's result to its own. Namespace tests run one at a time, so for
/// them this is the test's own time.
#[derive(Default)]
struct TestTimes {
    last: Option<Instant>,
    done: Vec<(String, Duration)>,
}

impl TestTimes {
    fn line(&mut self, line: &str, now: Instant) {
        if line.starts_with("running ") {
            self.last = Some(now);
            return;
        }
        let Some(rest) = line.strip_prefix("test ") else { return };
        let Some((name, verdict)) = rest.rsplit_once(" ... ") else { return };
        if matches!(verdict, "ok" | "FAILED") {
            let since = self.last.replace(now).unwrap_or(now);
            self.done.push((name.to_string(), now - since));
        }
    }
}

impl Outcome {
    /// Print the failed tests again (after whatever ran since), then return
    /// the run's result.
    pub fn finish(self, extra: &[(String, Duration)]) -> Result<()> {
        let mut t: Vec<&(String, Duration)> = self.timings.iter().chain(extra).collect();
        if !t.is_empty() {
            crate::step("time per test binary (wall clock, longest first)");
            let total: Duration = t.iter().map(|(_, d)| *d).sum();
            t.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
            for (name, d) in t {
                println!("    {:>7.1} s  {name}", d.as_secs_f64());
            }
            println!("    {:>7.1} s  in all", total.as_secs_f64());
        }
        let mut slow: Vec<&(String, Duration)> = self.tests.iter().collect();
        slow.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
        if !slow.is_empty() {
            crate::step(&format!("the {SLOWEST} slowest tests (wall clock)"));
            for (name, d) in slow.into_iter().take(SLOWEST) {
                println!("    {:>7.1} s  {name}", d.as_secs_f64());
            }
        }
        if !self.failures.is_empty() {
            crate::step("failed tests (repeated from above)");
            for s in &self.failures {
                let cut = s.len().saturating_sub(KEEP);
                let start = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                if start > 0 {
                    println!("[... {start} bytes of this section cut ...]");
                }
                print!("{}", &s[start..]);
            }
            let _ = std::io::stdout().flush();
        }
        self.result
    }
}

/// Run `cmd` (a `cargo test`), streaming its output as it comes.
pub fn run(cmd: &mut Command) -> Outcome {
    let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().with_context(|| format!("running {cmd:?}")) {
        Ok(c) => c,
        Err(e) => return Outcome { result: Err(e), failures: Vec::new(), timings: Vec::new(), tests: Vec::new() },
    };
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let reader = thread::spawn(move || {
        let (mut f, mut times) = (Failures::default(), TestTimes::default());
        let mut out = std::io::stdout();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(out, "{line}");
            f.line(&line);
            times.line(&line, Instant::now());
        }
        (f.sections, times.done)
    });
    // cargo says which binary runs next on stderr.
    let timer = thread::spawn(move || {
        let mut t = Timings::default();
        t.line("", Instant::now());
        let mut err = std::io::stderr();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(err, "{line}");
            t.line(&line, Instant::now());
        }
        t.end(Instant::now())
    });
    let status = child.wait().with_context(|| format!("waiting for {cmd:?}"));
    let (failures, tests) = reader.join().unwrap_or_default();
    let timings = timer.join().unwrap_or_default();
    let result = match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(anyhow::anyhow!("{cmd:?} failed: {s}")),
        Err(e) => Err(e),
    };
    Outcome { result, failures, timings, tests }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_each_binary_from_its_running_line_to_the_next() {
        let mut t = Timings::default();
        let t0 = Instant::now();
        t.line("   Compiling x", t0);
        t.line("     Running unittests src/lib.rs (target/debug/deps/x-1)", t0 + Duration::from_secs(5));
        t.line("test a ... ok", t0 + Duration::from_secs(6));
        t.line("     Running tests/netns.rs (target/debug/deps/netns-2)", t0 + Duration::from_secs(7));
        let done = t.end(t0 + Duration::from_secs(10));
        let names: Vec<(&str, u64)> = done.iter().map(|(n, d)| (n.as_str(), d.as_secs())).collect();
        assert_eq!(names, [("building", 5), ("unittests src/lib.rs", 2), ("tests/netns.rs", 3)]);
    }

    #[test]
    fn times_each_test_from_the_result_before() {
        let mut t = TestTimes::default();
        let t0 = Instant::now();
        t.line("running 2 tests", t0);
        t.line("test a::b ... ok", t0 + Duration::from_secs(3));
        t.line("test c ... FAILED", t0 + Duration::from_secs(4));
        t.line("test d ... ignored", t0 + Duration::from_secs(5));
        let got: Vec<(&str, u64)> = t.done.iter().map(|(n, d)| (n.as_str(), d.as_secs())).collect();
        assert_eq!(got, [("a::b", 3), ("c", 1)]);
    }

    #[test]
    fn keeps_each_failures_section_and_nothing_else() {
        let mut f = Failures::default();
        let text = "running 2 tests\ntest a ... ok\ntest b ... FAILED\n\nfailures:\n\n---- b stdout ----\n\
                    panicked at x.rs:1:1:\nboom\n\nfailures:\n    b\n\ntest result: FAILED. 1 passed; 1 failed\n\
                    running 1 test\ntest c ... ok\n\ntest result: ok. 1 passed\n";
        for l in text.lines() {
            f.line(l);
        }
        assert_eq!(f.sections.len(), 1);
        let s = &f.sections[0];
        assert!(s.starts_with("failures:\n"), "{s}");
        assert!(s.contains("boom") && s.contains("    b\n"), "{s}");
        assert!(s.trim_end().ends_with("1 failed"), "{s}");
        assert!(!s.contains("test c"), "{s}");
    }
}
