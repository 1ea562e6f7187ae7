//! Go's `text/tabwriter` as the docker CLI sets it up for tables (minimum width 10, padding 3,
//! spaces, left-aligned): cells end at a tab, a column is as wide as its widest cell plus the
//! padding, and a line's last cell (not ended by a tab) is written as it is. Columns are aligned
//! per block of consecutive lines that have that column, as Go does.

/// The narrowest column, padding included.
const MIN_WIDTH: usize = 10;
/// Spaces after a column's widest cell.
const PADDING: usize = 3;

/// Lays out `text` (lines of tab-separated cells) as Go's tabwriter does.
pub fn align(text: &str) -> String {
    let mut lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    // A trailing newline leaves an empty last line that Go never writes.
    let ends_with_newline = text.ends_with('\n');
    if ends_with_newline {
        lines.pop();
    }
    let mut out = String::new();
    let mut widths = Vec::new();
    format(&mut out, &lines, &mut widths, 0, lines.len());
    if !ends_with_newline && out.ends_with('\n') {
        out.pop();
    }
    out
}

/// Writes `rows` (the first is the header) as a table: the cells of a row separated by tabs,
/// then aligned.
pub fn write_rows(out: &mut impl std::io::Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let text: String = rows.iter().map(|r| r.join("\t") + "\n").collect();
    out.write_all(align(&text).as_bytes())
}

fn width(cell: &str) -> usize {
    cell.chars().count()
}

/// Go's `Writer.format`: finds the blocks of lines that have a cell in the next column, sizes
/// that column per block, and recurses into the block for the columns after it.
fn format(out: &mut String, lines: &[Vec<&str>], widths: &mut Vec<usize>, from: usize, to: usize) {
    let column = widths.len();
    let mut line0 = from;
    let mut this = from;
    while this < to {
        // Cells ended by a tab: all but the last.
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(out, lines, widths, line0, this);
        line0 = this;
        let mut w = MIN_WIDTH;
        while this < to && column + 1 < lines[this].len() {
            w = w.max(width(lines[this][column]) + PADDING);
            this += 1;
        }
        widths.push(w);
        format(out, lines, widths, line0, this);
        widths.pop();
        line0 = this;
    }
    write_lines(out, lines, widths, line0, to);
}

fn write_lines(out: &mut String, lines: &[Vec<&str>], widths: &[usize], from: usize, to: usize) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(w) = widths.get(j).filter(|_| j + 1 < line.len()) {
                out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(cell))));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::align;

    /// Columns are the widest cell plus three spaces, never narrower than ten; the last cell
    /// is written as it is (an empty one leaves the padding before it, as docker's does).
    #[test]
    fn columns_are_laid_out_as_gos_tabwriter_does() {
        assert_eq!(
            align("ID\tNAME\tPORTS\nabcdefghijkl\tweb\t\n"),
            "ID             NAME      PORTS\nabcdefghijkl   web       \n"
        );
        // A line with fewer cells ends the block: the next block is sized on its own.
        assert_eq!(
            align("a\tb\nc\nlong-long-long\td\n"),
            "a         b\nc\nlong-long-long   d\n"
        );
        assert_eq!(align("x"), "x");
        assert_eq!(align(""), "");
    }
}
