//! The proxy recipes of the operations guide, read from `docs/operations.md` itself so that the
//! tests run exactly what a person copies: a recipe is the fenced code block whose first line is
//! `# kited-recipe: NAME`.

use std::path::PathBuf;

/// The marker a recipe's first line carries.
const MARKER: &str = "# kited-recipe: ";

/// `docs/operations.md` in this checkout.
pub fn operations_guide() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md")
}

/// The text of recipe `name` (the marker line included: it is a comment in every proxy's
/// syntax). Panics when the guide has no such recipe, or has it twice.
pub fn recipe(name: &str) -> String {
    let path = operations_guide();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let found = recipes_in(&text, name);
    assert_eq!(
        found.len(),
        1,
        "{} must hold exactly one `{MARKER}{name}` block",
        path.display()
    );
    found.into_iter().next().expect("exactly one, checked")
}

/// Every fenced block in `markdown` whose first line is the marker for `name`.
fn recipes_in(markdown: &str, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match block.as_mut() {
            None if line.starts_with("```") => block = Some(Vec::new()),
            None => {}
            Some(lines) if line.trim_end() == "```" => {
                if lines.first().map(|l| l.trim()) == Some(&format!("{MARKER}{name}")) {
                    found.push(lines.join("\n") + "\n");
                }
                block = None;
            }
            Some(lines) => lines.push(line),
        }
    }
    found
}

/// `text` with each `(from, to)` replaced in order; panics when one is not there, so a recipe
/// that changed shape fails loudly instead of being tested half-substituted.
pub fn substitute(text: &str, swaps: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (from, to) in swaps {
        assert!(
            out.contains(from),
            "the recipe no longer contains {from:?}:\n{out}"
        );
        out = out.replace(from, to);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_marked_blocks_only() {
        let md = "text\n```\n# kited-recipe: a\nline 1\n```\n```nginx\n# kited-recipe: b\nx\n```\n```\nplain\n```\n";
        assert_eq!(recipes_in(md, "a"), vec!["# kited-recipe: a\nline 1\n"]);
        assert_eq!(recipes_in(md, "b"), vec!["# kited-recipe: b\nx\n"]);
        assert!(recipes_in(md, "c").is_empty());
    }
}
