//! A line diff: what changed from one text to another, line by line, for showing a change
//! before it is made (the console shows a policy's YAML this way). Longest common
//! subsequence over the lines that differ, after the common first and last lines are set
//! aside; the work is bounded (see [`MAX_CELLS`]).

/// One line of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// In both texts.
    Same(&'a str),
    /// Only in the old text.
    Removed(&'a str),
    /// Only in the new text.
    Added(&'a str),
}

impl Line<'_> {
    /// `same`, `removed` or `added`.
    pub fn kind(&self) -> &'static str {
        match self {
            Line::Same(_) => "same",
            Line::Removed(_) => "removed",
            Line::Added(_) => "added",
        }
    }

    /// The line's text, without its line ending.
    pub fn text(&self) -> &str {
        match self {
            Line::Same(t) | Line::Removed(t) | Line::Added(t) => t,
        }
    }
}

/// The most cells (lines that differ in the old text times lines that differ in the new)
/// the comparison fills. Past it, the differing middle is shown as all of its old lines
/// removed, then all of its new lines added: still correct, only less precise.
pub const MAX_CELLS: usize = 1 << 20;

/// The lines of `old` and `new` (split at `\n` or `\r\n`) as a diff: read top to bottom,
/// the `Same` and `Removed` lines give `old`, the `Same` and `Added` lines give `new`. Where
/// lines are replaced, the removed ones come first.
pub fn lines<'a>(old: &'a str, new: &'a str) -> Vec<Line<'a>> {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix =
        old[prefix..].iter().rev().zip(new[prefix..].iter().rev()).take_while(|(a, b)| a == b).count();
    let (a, b) = (&old[prefix..old.len() - suffix], &new[prefix..new.len() - suffix]);
    let mut out: Vec<Line<'a>> = old[..prefix].iter().map(|l| Line::Same(l)).collect();
    middle(a, b, &mut out);
    out.extend(old[old.len() - suffix..].iter().map(|l| Line::Same(l)));
    out
}

/// The diff of two runs of lines that share no first or last line.
fn middle<'a>(a: &[&'a str], b: &[&'a str], out: &mut Vec<Line<'a>>) {
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > MAX_CELLS {
        out.extend(a.iter().map(|l| Line::Removed(l)));
        out.extend(b.iter().map(|l| Line::Added(l)));
        return;
    }
    // `table[i * (m + 1) + j]`: the length of the longest common subsequence of a[i..] and b[j..].
    let width = m + 1;
    let mut table = vec![0u32; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i * width + j] = if a[i] == b[j] {
                table[(i + 1) * width + j + 1] + 1
            } else {
                table[(i + 1) * width + j].max(table[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            out.push(Line::Same(a[i]));
            i += 1;
            j += 1;
        } else if table[(i + 1) * width + j] >= table[i * width + j + 1] {
            out.push(Line::Removed(a[i]));
            i += 1;
        } else {
            out.push(Line::Added(b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| Line::Removed(l)));
    out.extend(b[j..].iter().map(|l| Line::Added(l)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(diff: &[Line<'_>]) -> String {
        diff.iter()
            .map(|l| match l {
                Line::Same(t) => format!(" {t}"),
                Line::Removed(t) => format!("-{t}"),
                Line::Added(t) => format!("+{t}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The old and new texts, read back from a diff.
    fn sides(diff: &[Line<'_>]) -> (Vec<String>, Vec<String>) {
        let old = diff.iter().filter(|l| !matches!(l, Line::Added(_))).map(|l| l.text().to_owned()).collect();
        let new =
            diff.iter().filter(|l| !matches!(l, Line::Removed(_))).map(|l| l.text().to_owned()).collect();
        (old, new)
    }

    #[test]
    fn a_changed_value_is_one_line_removed_and_one_added() {
        let old = "spec:\n  rules:\n  - when:\n    values: [alice@example.com]\n";
        let new = "spec:\n  rules:\n  - when:\n    values: [alice@example.com, dave@example.com]\n";
        assert_eq!(
            show(&lines(old, new)),
            " spec:\n   rules:\n   - when:\n-    values: [alice@example.com]\n+    values: [alice@example.com, dave@example.com]"
        );
    }

    #[test]
    fn insertions_and_deletions_in_the_middle_keep_the_common_lines() {
        let diff = lines("a\nb\nc\nd\ne\n", "a\nc\nx\nd\ne\ny\n");
        assert_eq!(show(&diff), " a\n-b\n c\n+x\n d\n e\n+y");
        let diff = lines("x\na\nb\n", "a\nb\nx\n");
        assert_eq!(diff.iter().filter(|l| matches!(l, Line::Same(_))).count(), 2, "{}", show(&diff));
    }

    #[test]
    fn empty_sides_are_all_added_or_all_removed() {
        assert_eq!(show(&lines("", "a\nb")), "+a\n+b");
        assert_eq!(show(&lines("a\nb\n", "")), "-a\n-b");
        assert!(lines("", "").is_empty());
        assert_eq!(show(&lines("a\r\nb\r\n", "a\nb\n")), " a\n b", "line endings do not count");
    }

    #[test]
    fn the_diff_always_reads_back_as_both_texts_and_is_minimal_for_small_cases() {
        // Every pair of texts over a tiny alphabet, up to 5 lines each.
        let texts: Vec<String> = (0..5)
            .flat_map(|len| {
                (0..3usize.pow(len)).map(move |mut code| {
                    (0..len)
                        .map(|_| {
                            let c = ["a", "b", "c"][code % 3];
                            code /= 3;
                            c
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
            })
            .collect();
        for old in &texts {
            for new in &texts {
                let diff = lines(old, new);
                let (o, n) = sides(&diff);
                assert_eq!(o, old.lines().collect::<Vec<_>>(), "{old:?} -> {new:?}");
                assert_eq!(n, new.lines().collect::<Vec<_>>(), "{old:?} -> {new:?}");
                let same = diff.iter().filter(|l| matches!(l, Line::Same(_))).count();
                assert_eq!(same, lcs(&o, &n), "not the longest common part: {old:?} -> {new:?}");
            }
        }
    }

    /// The length of a longest common subsequence, by brute recursion.
    fn lcs(a: &[String], b: &[String]) -> usize {
        match (a.split_first(), b.split_first()) {
            (Some((x, ra)), Some((y, rb))) if x == y => 1 + lcs(ra, rb),
            (Some((_, ra)), Some((_, rb))) => lcs(ra, b).max(lcs(a, rb)),
            _ => 0,
        }
    }

    #[test]
    fn past_the_budget_the_middle_is_replaced_whole_and_still_reads_back() {
        let old: String = (0..1100).map(|i| format!("old {i}\n")).collect();
        let new: String = (0..1100).map(|i| format!("new {i}\n")).collect();
        let old = format!("head\n{old}tail\n");
        let new = format!("head\n{new}tail\n");
        let diff = lines(&old, &new);
        let (o, n) = sides(&diff);
        assert_eq!(o.join("\n"), old.trim_end());
        assert_eq!(n.join("\n"), new.trim_end());
        assert_eq!(diff[0], Line::Same("head"));
        assert_eq!(diff[1], Line::Removed("old 0"));
        assert_eq!(diff[1101], Line::Added("new 0"));
    }
}
