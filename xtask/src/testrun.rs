//! `cargo test` with its failures repeated at the very end.
//!
//! CI keeps only the tail of a run, and the fuzzers print thousands of lines
//! after the tests. Without this, a red run says "cargo test failed" and
//! nothing about which test or why.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    thread,
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

pub struct Outcome {
    result: Result<()>,
    failures: Vec<String>,
}

impl Outcome {
    /// Print the failed tests again (after whatever ran since), then return
    /// the run's result.
    pub fn finish(self) -> Result<()> {
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
    let mut child = match cmd.stdout(Stdio::piped()).spawn().with_context(|| format!("running {cmd:?}")) {
        Ok(c) => c,
        Err(e) => return Outcome { result: Err(e), failures: Vec::new() },
    };
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = thread::spawn(move || {
        let mut f = Failures::default();
        let mut out = std::io::stdout();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(out, "{line}");
            f.line(&line);
        }
        f.sections
    });
    let status = child.wait().with_context(|| format!("waiting for {cmd:?}"));
    let failures = reader.join().unwrap_or_default();
    let result = match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(anyhow::anyhow!("{cmd:?} failed: {s}")),
        Err(e) => Err(e),
    };
    Outcome { result, failures }
}

#[cfg(test)]
mod tests {
    use super::*;

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
