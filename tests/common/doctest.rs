//! The docs as tests (#20): the fenced blocks of `README.md` and `docs/*.md`, and the
//! `<!-- doctest: … -->` marker that says how each shell block is checked.
//!
//! A marker is an HTML comment (invisible on GitHub) on the line right before the fence:
//!
//! ```text
//! <!-- doctest: MODE
//! sub: TEXT => REPLACEMENT     (the block as run: TEXT replaced; @NAME@ = a harness value)
//! expect: TEXT                 (its output contains TEXT)
//! check: SHELL                 (run after it, with its variables: must exit 0)
//! why: …                       (shape: what it needs that a test cannot have)
//! -->
//! ```
//!
//! MODE: `run` (the block as one script against the live hub, `set -euo pipefail`),
//! `each` (each command alone; it must exit 0 unless the comment after it says
//! `exit status N`), `vendor` (run against the live hub, which saves the vendor's
//! definition without calling it: placeholders `<…>` filled, `--*-env` variables set;
//! commands that would call the vendor are checked for shape only), `shape` (needs a
//! real vendor, an AWS account or a release build: every `provisync` command is parsed by
//! the CLI with `--help`, every `make` target by `make -n`), `output` (printed text,
//! compared with the real program's output by the test that names it).

/// One fenced block, with its marker.
#[derive(Clone, Debug)]
pub struct Block {
    pub file: String,
    /// 1-based line of the opening fence.
    pub line: usize,
    pub lang: String,
    pub body: String,
    pub marker: Option<Marker>,
}

#[derive(Clone, Debug, Default)]
pub struct Marker {
    pub mode: String,
    pub subs: Vec<(String, String)>,
    pub expect: Vec<String>,
    pub check: Vec<String>,
    pub why: Option<String>,
}

/// A block of shell commands (what must carry a marker).
pub fn is_shell(lang: &str) -> bool {
    matches!(lang, "sh" | "bash" | "shell" | "console" | "zsh")
}

/// The fenced blocks of a Markdown file, each with the marker right before it.
pub fn blocks(file: &str, text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        // Fences may be indented (a block inside a numbered list): the body loses the
        // fence's indentation.
        let indent = lines[i].len() - lines[i].trim_start().len();
        let Some(lang) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && !lines[i].trim_start().starts_with("```") {
            let line = lines[i];
            let cut = line.len() - line.trim_start().len();
            body.push(&line[cut.min(indent)..]);
            i += 1;
        }
        i += 1;
        out.push(Block {
            file: file.to_string(),
            line: start + 1,
            lang: lang.trim().to_string(),
            body: body.join("\n") + "\n",
            marker: marker_before(&lines, start),
        });
    }
    out
}

/// The `<!-- doctest: … -->` comment ending on the line before `fence`, if any.
fn marker_before(lines: &[&str], fence: usize) -> Option<Marker> {
    let end = fence.checked_sub(1)?;
    if !lines[end].trim_end().ends_with("-->") {
        return None;
    }
    let mut start = end;
    while !lines[start].trim_start().starts_with("<!--") {
        start = start.checked_sub(1)?;
    }
    let text = lines[start..=end].join("\n");
    let inner = text
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim();
    let rest = inner.strip_prefix("doctest:")?;
    let mut m = Marker::default();
    let mut rows = rest.lines();
    m.mode = rows.next().unwrap_or_default().trim().to_string();
    for row in rows {
        let row = row.trim();
        if let Some(v) = row.strip_prefix("sub:") {
            let (a, b) = v
                .split_once("=>")
                .unwrap_or_else(|| panic!("sub without `=>`: {row}"));
            m.subs.push((a.trim().to_string(), b.trim().to_string()));
        } else if let Some(v) = row.strip_prefix("expect:") {
            m.expect.push(v.trim().to_string());
        } else if let Some(v) = row.strip_prefix("check:") {
            m.check.push(v.trim().to_string());
        } else if let Some(v) = row.strip_prefix("why:") {
            m.why = Some(v.trim().to_string());
        } else if !row.is_empty() {
            panic!("unknown doctest marker line {row:?}");
        }
    }
    Some(m)
}

/// The commands of a shell block: continuation lines joined, comments and blank lines
/// dropped; each with the comment lines that follow it (what the docs say it prints).
pub fn commands(body: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut current = String::new();
    for line in body.lines() {
        let t = line.trim();
        if current.is_empty() && t.starts_with('#') {
            if let Some(last) = out.last_mut() {
                last.1.push(t.trim_start_matches('#').trim().to_string());
            }
            continue;
        }
        if current.is_empty() && t.is_empty() {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            // A quoted string that goes on to the next line.
            None if quote_open(&format!("{current}{line}")) => {
                current.push_str(line);
                current.push('\n');
            }
            None => {
                current.push_str(line);
                let (cmd, comment) = split_comment(&current);
                out.push((
                    cmd.trim().to_string(),
                    comment.map(|c| vec![c]).unwrap_or_default(),
                ));
                current.clear();
            }
        }
    }
    out
}

/// Does `text` end inside a quoted string?
fn quote_open(text: &str) -> bool {
    let (mut single, mut double, mut comment) = (false, false, false);
    let mut prev = ' ';
    for c in text.chars() {
        match c {
            '\n' => comment = false,
            _ if comment => {}
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => comment = true,
            _ => {}
        }
        prev = c;
    }
    single || double
}

/// `cmd   # comment` → (`cmd`, `comment`), outside quotes.
fn split_comment(line: &str) -> (String, Option<String>) {
    let (mut single, mut double) = (false, false);
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || bytes[i - 1] == b' ') => {
                return (
                    line[..i].to_string(),
                    Some(line[i + 1..].trim().to_string()),
                );
            }
            _ => {}
        }
    }
    (line.to_string(), None)
}

/// Words of a command as the shell splits them (quotes removed; no expansion).
pub fn words(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let (mut single, mut double) = (false, false);
    for c in cmd.chars() {
        match c {
            '\'' if !double => {
                single = !single;
                any = true;
            }
            '"' if !single => {
                double = !double;
                any = true;
            }
            c if c.is_whitespace() && !single && !double => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The `##`… headings of a Markdown file outside fenced blocks, as GitHub anchors them.
pub fn headings(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim().to_string();
        out.push((title.clone(), anchor(&title)));
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to `-`.
pub fn anchor(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocks_markers_and_commands() {
        let md = "text\n<!-- doctest: run\nsub: a => @B@\nexpect: ok\n-->\n```sh\nx \\\n  --y 'a b' # note\n# prints\n```\n```\nout\n```\n";
        let b = blocks("f.md", md);
        assert_eq!(b.len(), 2);
        let m = b[0].marker.as_ref().unwrap();
        assert_eq!(m.mode, "run");
        assert_eq!(m.subs, vec![("a".into(), "@B@".into())]);
        assert_eq!(m.expect, vec!["ok".to_string()]);
        assert!(b[1].marker.is_none());
        let c = commands(&b[0].body);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].1, vec!["note".to_string(), "prints".to_string()]);
        assert_eq!(words(&c[0].0), vec!["x", "--y", "a b"]);
        let multi = commands("curl -d '{\n  \"a\": 1\n}'\nnext\n");
        assert_eq!(multi.len(), 2, "{multi:?}");
        assert_eq!(
            anchor("Connect a Drupal site (signed webhooks)"),
            "connect-a-drupal-site-signed-webhooks"
        );
    }
}
