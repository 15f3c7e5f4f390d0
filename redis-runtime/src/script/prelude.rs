//! The helpers of `scripts/prelude.lua`, split into named pieces so that a
//! script includes exactly the helpers it calls.

use std::sync::LazyLock;

/// The pseudo-helper that stands for the layout table: helpers that read
/// `layout` depend on it, and the assembler renders the table for them.
pub(crate) const LAYOUT: &str = "layout";

/// One helper: a `--- name: dependencies` header and the lines up to the
/// next header.
#[derive(Debug)]
pub(crate) struct Helper {
    pub(crate) name: &'static str,
    pub(crate) needs: Vec<&'static str>,
    pub(crate) source: &'static str,
}

static HELPERS: LazyLock<Vec<Helper>> =
    LazyLock::new(|| split(include_str!("../scripts/prelude.lua")));

/// Splits the prelude at its `--- name: dependencies` headers; the text
/// before the first header is the file's own documentation and is dropped.
fn split(source: &'static str) -> Vec<Helper> {
    let mut helpers = vec![Helper {
        name: LAYOUT,
        needs: Vec::new(),
        source: "",
    }];
    // The helper being read: name, dependencies, where its source starts.
    let mut open: Option<(&'static str, Vec<&'static str>, usize)> = None;
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        if let Some(spec) = line.strip_prefix("--- ") {
            if let Some((name, needs, start)) = open.take() {
                let source = &source[start..offset];
                helpers.push(Helper {
                    name,
                    needs,
                    source,
                });
            }
            let (name, needs) = spec.split_once(':').unwrap_or((spec, ""));
            open = Some((
                name.trim(),
                needs.split_whitespace().collect(),
                offset + line.len(),
            ));
        }
        offset += line.len();
    }
    if let Some((name, needs, start)) = open {
        let source = &source[start..];
        helpers.push(Helper {
            name,
            needs,
            source,
        });
    }
    helpers
}

/// The helpers `needs` names, with everything they depend on, in prelude
/// order (so each is defined before its callers).
pub(crate) fn with_dependencies(needs: &[&str]) -> Vec<&'static Helper> {
    let mut wanted: Vec<&str> = needs.to_vec();
    let mut i = 0;
    while let Some(name) = wanted.get(i).copied() {
        if let Some(helper) = HELPERS.iter().find(|h| h.name == name) {
            for dependency in &helper.needs {
                if !wanted.contains(dependency) {
                    wanted.push(dependency);
                }
            }
        }
        i += 1;
    }
    HELPERS
        .iter()
        .filter(|helper| wanted.contains(&helper.name))
        .collect()
}

/// Names in `needs` that are not helpers of the prelude (a typo in a
/// script's `--- needs:` line or in the write body's list).
#[cfg(test)]
pub(crate) fn unknown<'a>(needs: &[&'a str]) -> Vec<&'a str> {
    needs
        .iter()
        .copied()
        .filter(|name| !HELPERS.iter().any(|h| h.name == *name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_helper_is_found_with_its_source_and_known_dependencies() {
        let names: Vec<&str> = HELPERS.iter().map(|h| h.name).collect();
        for expected in [
            "layout",
            "safe",
            "now_ms",
            "score_ok",
            "build",
            "key_of_member",
            "sweep",
        ] {
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
        for helper in HELPERS.iter().skip(1) {
            assert!(
                helper
                    .source
                    .contains(&format!("local function {}(", helper.name)),
                "{} defines itself:\n{}",
                helper.name,
                helper.source
            );
            assert!(
                !helper.source.contains("\n--- "),
                "{} runs into the next",
                helper.name
            );
            assert_eq!(
                unknown(&helper.needs),
                Vec::<&str>::new(),
                "{}",
                helper.name
            );
        }
    }

    #[test]
    fn dependencies_come_along_in_prelude_order() {
        let names: Vec<&str> = with_dependencies(&["key_of_member"])
            .iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(names, ["layout", "safe", "build", "key_of_member"]);
        assert!(with_dependencies(&[]).is_empty());
    }

    #[test]
    fn fixed_scripts_name_only_known_helpers() {
        for body in [
            include_str!("../scripts/query.lua"),
            include_str!("../scripts/sweep.lua"),
            include_str!("../scripts/unindex.lua"),
            include_str!("../scripts/expire.lua"),
        ] {
            let needs: Vec<&str> = body
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("--- needs:"))
                .expect("a needs line")
                .split_whitespace()
                .collect();
            assert_eq!(unknown(&needs), Vec::<&str>::new());
        }
    }
}
