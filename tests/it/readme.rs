//! The README is the newcomer's manual: every `xdb` command line it shows
//! names a real subcommand and real flags, and its plan example loads.

use std::path::Path;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md")
}

/// The fenced code blocks of a markdown text, with their info string.
fn code_blocks(md: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in md.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            match current.take() {
                Some(block) => out.push(block),
                None => current = Some((info.trim().to_string(), String::new())),
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

fn help(args: &[&str]) -> String {
    let out = crate::support::xdb_command().args(args).arg("--help").output().expect("run xdb");
    assert!(out.status.success(), "xdb {args:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_command_line_in_the_readme_exists() {
    let mut checked = 0;
    for (_, body) in code_blocks(&readme()) {
        for line in body.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("xdb ") else { continue };
            let words: Vec<&str> = rest.split_whitespace().take_while(|w| !w.starts_with('#')).collect();
            let Some(cmd) = words.first() else { continue };
            let text = help(&[cmd]);
            for w in &words[1..] {
                // `--flag`, `[--flag` and `--flag=…` all name a flag.
                let w = w.trim_start_matches('[');
                if let Some(flag) = w.strip_prefix("--") {
                    let flag = flag.split(['=', ']', ' ']).next().unwrap_or("");
                    assert!(
                        text.contains(&format!("--{flag}")),
                        "README shows `xdb {cmd} --{flag}`, which does not exist"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} xdb command lines found in the README");
}

#[test]
fn the_readme_plan_example_loads() {
    let blocks = code_blocks(&readme());
    let (_, yaml) = blocks
        .iter()
        .find(|(info, body)| info == "yaml" && body.contains("tables:") && body.contains("source:"))
        .expect("a yaml plan example in the README");
    // The example points at a rules file of the user's (dropped here) and at
    // password variables (given defaults, so no environment is needed).
    let yaml: String = yaml
        .lines()
        .filter(|l| !l.trim_start().starts_with("rules:"))
        .map(|l| format!("{}\n", l.replace("_PASSWORD}", "_PASSWORD:-example-pw}")))
        .collect();
    let plan = xdb::plan::Plan::parse(&yaml, Path::new("README.md"));
    assert!(
        plan.is_ok(),
        "the README's plan example does not load: {}",
        plan.err().map(|e| e.to_string()).unwrap_or_default()
    );
}
