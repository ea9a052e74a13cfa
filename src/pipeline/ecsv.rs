//! The ECSV header (step 1 of the data path, text tables): the `# %ECSV 1.0` YAML block that
//! gives each column's name and `datatype`, and the delimiter. Only those keys are read; the
//! data lines themselves are parsed by arrow's CSV reader (`tables.rs`) with the types found
//! here. Both YAML styles that writers use are accepted: astropy's flow mappings
//! (`# - {name: a, datatype: int64}`) and the block mappings of the Gaia bulk files
//! (`# - name: a` / `#   datatype: int64`).

use anyhow::{bail, Result};
use arrow::datatypes::{DataType, Field, Schema};

/// What the header says.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct EcsvHeader {
    /// Field delimiter of the data lines (ECSV's default is a space).
    pub(crate) delimiter: u8,
    /// Columns in order, with the Arrow types the data is read as.
    pub(crate) schema: Schema,
}

/// The Arrow type of an ECSV `datatype` (ECSV 1.0, section "datatype"). float16 is read as
/// float32 (arrow's CSV reader has no half floats).
fn arrow_type(datatype: &str) -> Option<DataType> {
    Some(match datatype {
        "bool" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float16" | "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "string" => DataType::Utf8,
        _ => return None,
    })
}

/// A YAML scalar without its quotes.
fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

/// `key: value` pairs of a flow mapping `{a: 1, b: 'x, y'}` (commas inside quotes or
/// brackets do not split).
fn flow_pairs(body: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    for (i, ch) in body.char_indices() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(ch),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&body[start..]);
    parts
        .into_iter()
        .filter_map(|p| p.split_once(':'))
        .map(|(k, v)| (unquote(k).to_string(), unquote(v).to_string()))
        .collect()
}

/// Parse the header from the file's leading comment lines (`# ` stripped or not); `file`
/// names it in errors, with the line.
pub(crate) fn parse_header(lines: &[String], file: &str) -> Result<EcsvHeader> {
    let body: Vec<&str> = lines
        .iter()
        .map(|l| l.strip_prefix('#').unwrap_or(l))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    if !body.first().is_some_and(|l| l.starts_with("%ECSV")) {
        bail!("{file}: line 1: not an ECSV file (expected '# %ECSV 1.0')");
    }
    let mut delimiter = b' ';
    let mut cols: Vec<(String, Option<String>, usize)> = Vec::new(); // name, datatype, line
    let mut in_datatype = false;
    for (k, raw) in body.iter().enumerate().skip(1) {
        let line = k + 1;
        let indent = raw.len() - raw.trim_start().len();
        let t = raw.trim();
        if t.is_empty() || t == "---" {
            continue;
        }
        if indent == 0 && !t.starts_with('-') {
            in_datatype = t.starts_with("datatype:");
            if let Some(v) = t.strip_prefix("delimiter:") {
                delimiter = match unquote(v) {
                    "," => b',',
                    " " | "" => b' ',
                    other => bail!("{file}: line {line}: unsupported delimiter '{other}'"),
                };
            }
            continue;
        }
        if !in_datatype {
            continue;
        }
        let entry = t.strip_prefix('-').map(str::trim);
        let pairs = match entry {
            Some(e) if e.starts_with('{') => {
                let inner = e.strip_prefix('{').and_then(|e| e.strip_suffix('}'));
                let Some(inner) = inner else {
                    bail!("{file}: line {line}: unterminated column entry");
                };
                cols.push((String::new(), None, line));
                flow_pairs(inner)
            }
            Some(e) => {
                cols.push((String::new(), None, line));
                flow_pairs(e)
            }
            None => flow_pairs(t),
        };
        let Some(col) = cols.last_mut() else {
            bail!("{file}: line {line}: column attribute before any '-' entry");
        };
        for (key, v) in pairs {
            match key.as_str() {
                "name" => col.0 = v,
                "datatype" => col.1 = Some(v),
                _ => {}
            }
        }
    }
    if cols.is_empty() {
        bail!("{file}: the ECSV header lists no columns (no 'datatype:' entries)");
    }
    let mut fields = Vec::with_capacity(cols.len());
    for (name, dt, line) in cols {
        if name.is_empty() {
            bail!("{file}: line {line}: ECSV column entry without a name");
        }
        let Some(dt) = dt else {
            bail!("{file}: line {line}: column {name}: no datatype");
        };
        let Some(t) = arrow_type(&dt) else {
            bail!("{file}: line {line}: column {name}: unsupported datatype '{dt}'");
        };
        fields.push(Field::new(name, t, true));
    }
    Ok(EcsvHeader {
        delimiter,
        schema: Schema::new(fields),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn flow_and_block_styles_give_the_same_schema() {
        let flow = lines(
            "# %ECSV 1.0\n# ---\n# delimiter: ','\n# datatype:\n\
             # - {name: source_id, datatype: int64}\n\
             # - {name: j_m, unit: mag, datatype: float32, description: 'J, 2MASS {PSC}'}\n\
             # - {name: ph_qual, datatype: string}\n# schema: astropy-2.0",
        );
        let block = lines(
            "# %ECSV 1.0\n# ---\n# delimiter: ','\n# datatype:\n# -\n#   name: source_id\n\
             #   datatype: int64\n# - name: j_m\n#   unit: mag\n#   datatype: float32\n\
             # - name: ph_qual\n#   datatype: string\n#   description: \"quality, per band\"\n\
             # meta: !!omap\n# - {name: x}",
        );
        let a = parse_header(&flow, "f").unwrap();
        let b = parse_header(&block, "f").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.delimiter, b',');
        let names: Vec<_> = a.schema.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["source_id", "j_m", "ph_qual"]);
        assert_eq!(a.schema.field(1).data_type(), &DataType::Float32);
    }

    #[test]
    fn bad_headers_name_the_file_line_and_column() {
        let e = parse_header(
            &lines("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: a, datatype: complex128}"),
            "t.ecsv",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("t.ecsv: line 4: column a: unsupported datatype"),
            "{e}"
        );
        let e = parse_header(&lines("# hello"), "t.ecsv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an ECSV file"), "{e}");
        let e = parse_header(
            &lines("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: a}"),
            "t.ecsv",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("column a: no datatype"), "{e}");
        // the default delimiter is a space
        let h = parse_header(
            &lines("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: a, datatype: int8}"),
            "t",
        )
        .unwrap();
        assert_eq!(h.delimiter, b' ');
    }
}
