"""Splices measured rows into a table of docs/RESULTS.md (used by the scripts/results_*.sh scripts).

The table lies between `<!-- MARKER:begin -->` and `<!-- MARKER:end -->`. Each measured row replaces
the row of the same key; the others stay (a run of some configurations leaves the rest as it was),
and every row ends with a "measured" cell saying when and where it was measured.
"""
import re


def _rows(text, ncols, key, header_cell):
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= ncols and cells[0] not in (header_cell, "") and not cells[0].startswith("---"):
            out[key(cells)] = cells
    return out


def splice_rows(doc, marker, measured, header, ncols, key, sort_key, when, preamble="",
                new_section=None):
    """Merges the rows of the markdown table `measured` (ncols cells each) into the table of `doc`
    between the MARKER comments. header: the header and alignment lines (ncols + 1 columns, the
    last "measured"); key(cells) names a row; sort_key(cells) orders them; when: the measured cell
    of the new rows; preamble: text between the begin marker and the table. Without the markers,
    a new section titled new_section is appended, or with new_section None it is an error."""
    s = open(doc).read()
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    header_cell = header[0].strip().strip("|").split("|")[0].strip()
    old = re.search(re.escape(begin) + "(.*?)" + re.escape(end), s, flags=re.S)
    if not old and new_section is None:
        raise SystemExit(f"{doc} has no {marker} markers")
    kept = _rows(old.group(1), ncols, key, header_cell) if old else {}
    for k, cells in _rows(measured, ncols, key, header_cell).items():
        kept[k] = cells[:ncols] + [when]
    lines = list(header)
    for cells in sorted(kept.values(), key=sort_key):
        cells = (cells + [""] * (ncols + 1))[:ncols + 1]
        lines.append("| " + " | ".join(cells) + " |")
    block = begin + "\n" + preamble + "\n".join(lines) + "\n" + end
    if old:
        s = s[:old.start()] + block + s[old.end():]
    else:
        s = s.rstrip("\n") + f"\n\n## {new_section}\n\n" + block + "\n"
    open(doc, "w").write(s)
