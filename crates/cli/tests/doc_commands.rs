//! Every `anydepth` command the README, the docs and the commands' own help show parses
//! with the command line as it is, so a renamed or removed flag fails here rather than in a
//! reader's shell. Only the parsing is checked: nothing runs.

use std::path::{Path, PathBuf};

use anydepth::Cli;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where a Markdown line stands.
enum Fence<'a> {
    Outside,
    /// In a shell block: its lines so far, with their numbers.
    Shell(Vec<(usize, &'a str)>),
    /// In a block of another language.
    Other,
}

/// The fenced shell blocks of a Markdown text (untagged, `sh`, `bash`, `shell` or
/// `console`), each as its lines with their numbers.
fn shell_blocks(markdown: &str) -> Vec<Vec<(usize, &str)>> {
    let mut blocks = Vec::new();
    let mut fence = Fence::Outside;
    for (i, line) in markdown.lines().enumerate() {
        let tag = line.trim_start().strip_prefix("```");
        fence = match (fence, tag) {
            (Fence::Outside, Some(tag)) => {
                if ["", "sh", "bash", "shell", "console"].contains(&tag.trim()) {
                    Fence::Shell(Vec::new())
                } else {
                    Fence::Other
                }
            }
            (Fence::Shell(lines), Some(_)) => {
                blocks.push(lines);
                Fence::Outside
            }
            (Fence::Other, Some(_)) => Fence::Outside,
            (Fence::Shell(mut lines), None) => {
                lines.push((i + 1, line));
                Fence::Shell(lines)
            }
            (fence, None) => fence,
        };
    }
    blocks
}

/// Shell lines with their continuations (`\` as the last character, not in a comment)
/// joined as the shell joins them, numbered by their first line.
fn joined(lines: &[(usize, &str)]) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut open = false;
    for &(number, line) in lines {
        let comment = line.trim_start().starts_with('#');
        let (text, continues) = match line.strip_suffix('\\') {
            Some(text) if !comment => (text, true),
            _ => (line.trim_end(), false),
        };
        match out.last_mut() {
            Some((_, last)) if open => last.push_str(text),
            _ => out.push((number, text.trim_start().to_owned())),
        }
        open = continues;
    }
    out
}

/// The words of a shell command as the shell passes them: quotes and escapes removed,
/// stopping at an unquoted comment, pipe, list or redirection (a redirected descriptor's
/// number dropped).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let text = word.get_or_insert_with(String::new);
                text.extend(chars.by_ref().take_while(|&q| q != '\''));
            }
            '"' => {
                let text = word.get_or_insert_with(String::new);
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => text.extend(chars.next()),
                        q => text.push(q),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '#' if word.is_none() => break,
            '>' | '<' => {
                if word
                    .as_ref()
                    .is_some_and(|w| w.chars().all(|d| d.is_ascii_digit()))
                {
                    word = None;
                }
                break;
            }
            '|' | ';' | '&' => break,
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The `anydepth` commands in `lines` (a `$ ` prompt allowed), with where they stand.
fn commands(source: &str, lines: Vec<(usize, String)>) -> Vec<(String, Vec<String>)> {
    lines
        .into_iter()
        .filter_map(|(number, line)| {
            let line = line.strip_prefix("$ ").unwrap_or(&line);
            let words = shell_words(line);
            let program = words.first()?;
            (program == "anydepth" || program.ends_with("/anydepth"))
                .then(|| (format!("{source}:{number}"), words))
        })
        .collect()
}

fn check(found: &[(String, Vec<String>)]) -> Vec<String> {
    found
        .iter()
        .filter_map(|(place, words)| match Cli::try_parse_from(words) {
            Ok(_) => None,
            Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
                None
            }
            Err(e) => Some(format!("{place}: `{}`\n{e}", words.join(" "))),
        })
        .collect()
}

#[test]
fn the_docs_commands_parse() {
    let mut files = vec![root().join("README.md")];
    let docs = std::fs::read_dir(root().join("docs")).expect("read docs/");
    files.extend(
        docs.filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    files.sort();
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a Markdown file");
        let name = file
            .strip_prefix(root())
            .unwrap_or(file)
            .display()
            .to_string();
        for block in shell_blocks(&text) {
            found.extend(commands(&name, joined(&block)));
        }
    }
    println!("{} commands in {} files", found.len(), files.len());
    // The README alone shows several dozen; finding few means the extraction broke.
    assert!(found.len() >= 40, "only {} commands found", found.len());
    let failures = check(&found);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_help_examples_parse() {
    let cli = Cli::command();
    let mut found = Vec::new();
    for sub in cli.get_subcommands() {
        let helps = [sub.get_after_help(), sub.get_after_long_help()];
        for help in helps.into_iter().flatten() {
            let text = help.to_string();
            let lines: Vec<(usize, &str)> =
                text.lines().enumerate().map(|(i, l)| (i + 1, l)).collect();
            found.extend(commands(
                &format!("anydepth {} --help", sub.get_name()),
                joined(&lines),
            ));
        }
    }
    println!("{} commands in the help", found.len());
    assert!(found.len() >= 10, "only {} commands found", found.len());
    let failures = check(&found);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn shell_words_follow_the_shell() {
    assert_eq!(
        shell_words(r#"anydepth fuse --color 'a b/*.jpg' --token "$T" -o x.ply  # note"#),
        [
            "anydepth",
            "fuse",
            "--color",
            "a b/*.jpg",
            "--token",
            "$T",
            "-o",
            "x.ply"
        ]
    );
    assert_eq!(
        shell_words("anydepth doctor | head"),
        ["anydepth", "doctor"]
    );
    assert_eq!(
        shell_words("anydepth doctor 2>err.txt"),
        ["anydepth", "doctor"]
    );
    assert_eq!(shell_words("a#b c"), ["a#b", "c"]);
    assert_eq!(shell_words(r#"a\ b "c\"d" 'e\'"#), ["a b", "c\"d", "e\\"]);
    let lines = [
        (3, "anydepth cloud \\"),
        (4, "  --depth d.png"),
        (5, "# a comment \\"),
        (6, "x\\"),
        (7, "y"),
    ];
    assert_eq!(
        joined(&lines),
        [
            (3, "anydepth cloud   --depth d.png".to_owned()),
            (5, "# a comment \\".to_owned()),
            (6, "xy".to_owned())
        ]
    );
    let markdown = "```rust\nanydepth no\n```\n```sh\nanydepth a \\\n```\n```\nanydepth b\n```\n";
    let blocks = shell_blocks(markdown);
    assert_eq!(
        blocks,
        [vec![(5, "anydepth a \\")], vec![(8, "anydepth b")]]
    );
    assert_eq!(joined(&blocks[0]), [(5, "anydepth a ".to_owned())]);
}
